// Hybrid (universal differential equation): known decay plus a small neural correction,
// written out: y' = -k y + sum_j w_j tanh(a_j y + c_j) with the hidden units (a_j, c_j) fixed
// and the output weights w learned (a neural-linear correction: no sign or permutation
// symmetry, so the posterior is unimodal). y ~ normal(z, sigma).
functions {
  vector hybrid(real t, vector y, real k, vector w, vector a, vector c) {
    vector[1] dydt;
    dydt[1] = -k * y[1] + dot_product(w, tanh(a * y[1] + c));
    return dydt;
  }
}
data {
  int<lower=1> N;
  array[N] real ts;
  vector[N] y;
  real y0;
  int<lower=1> H;
  vector[H] a;
  vector[H] c;
  real tol;
}
parameters {
  real<lower=0> k;
  vector[H] w;
  real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[1] z = ode_rk45_tol(hybrid, [y0]', 0.0, ts, tol, tol, 100000, k, w, a, c);
}
model {
  k ~ lognormal(log(0.5), 0.5);
  w ~ normal(0, 0.3);
  sigma ~ normal(0, 0.2);
  for (i in 1:N) y[i] ~ normal(z[i, 1], sigma);
}
