// One-compartment pharmacokinetics with first-order absorption (the theophylline model,
// Boeckmann, Sheiner & Beal 1994; as in the Stan/Torsten one-compartment examples):
// an oral dose D into the gut at t = 0, d gut/dt = -ka gut, d central/dt = ka gut - ke central,
// volume 1 L, concentration ~ lognormal(log central, sigma).
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
  real dose;
  real tol;
}
parameters {
  real<lower=0> ka;
  real<lower=0> ke;
  real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[2] y = ode_rk45_tol(one_cpt, [dose, 0]', 0.0, ts, tol, tol, 100000, ka, ke);
}
model {
  ka ~ lognormal(0, 1);
  ke ~ lognormal(log(0.2), 1);
  sigma ~ normal(0, 0.5);
  for (i in 1:N) conc[i] ~ lognormal(log(y[i, 2]), sigma);
}
