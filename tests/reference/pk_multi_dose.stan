// One-compartment oral PK with repeated doses (the theophylline model of Boeckmann, Sheiner &
// Beal 1994 under a multiple-dose regimen, as in the Stan/Torsten examples), written without
// Torsten: each dose is an impulse into the gut, so the solve is split into segments between
// dose times; segment k starts at dose_times[k] from the previous segment's end state plus
// F * amounts[k] in the gut. The first dose is at t0 = dose_times[1], with both compartments
// empty just before it. d gut/dt = -ka gut, d central/dt = ka gut - ke central, volume 1 L,
// bioavailability F; concentration ~ lognormal(log central, sigma).
// Needs: ts increasing, no observation at a dose time, at least one after the last dose.
functions {
  vector one_cpt(real t, vector y, real ka, real ke) {
    vector[2] dydt;
    dydt[1] = -ka * y[1];
    dydt[2] = ka * y[1] - ke * y[2];
    return dydt;
  }
}
data {
  int<lower=1> N;
  array[N] real ts;
  vector[N] conc;
  int<lower=1> J;
  array[J] real dose_times;  // increasing; dose_times[1] = t0
  vector[J] amounts;
  real tol;
}
transformed data {
  // first[k]: index of the first observation after dose k (first[J + 1] = N + 1)
  array[J + 1] int first;
  first[J + 1] = N + 1;
  for (k in 1:J) {
    first[k] = 1;
    while (first[k] <= N && ts[first[k]] < dose_times[k]) first[k] += 1;
  }
}
parameters {
  real<lower=0> ka;
  real<lower=0> ke;
  real<lower=0> F;
  real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[2] y;
  {
    vector[2] state = rep_vector(0, 2);
    for (k in 1:J) {
      int n = first[k + 1] - first[k];
      int m = k < J ? n + 1 : n;  // save the next dose time too, to carry the state on
      array[m] real seg_ts;
      state[1] += F * amounts[k];
      for (i in 1:n) seg_ts[i] = ts[first[k] + i - 1];
      if (k < J) seg_ts[m] = dose_times[k + 1];
      array[m] vector[2] sol = ode_rk45_tol(one_cpt, state, dose_times[k], seg_ts, tol, tol, 100000, ka, ke);
      for (i in 1:n) y[first[k] + i - 1] = sol[i];
      state = sol[m];
    }
  }
}
model {
  ka ~ lognormal(0, 1);
  ke ~ lognormal(log(0.2), 1);
  F ~ lognormal(0, 0.25);
  sigma ~ normal(0, 0.5);
  for (i in 1:N) conc[i] ~ lognormal(log(y[i, 2]), sigma);
}
