// Robertson's chemical reactions (Robertson 1966; Hairer & Wanner, Solving ODEs II, the classic
// stiff test), rate constants inferred, solved by Stan's BDF (CVODES):
// y1' = -k1 y1 + k3 y2 y3, y2' = k1 y1 - k3 y2 y3 - k2 y2^2, y3' = k2 y2^2, y0 = (1, 0, 0).
// All three species observed with multiplicative noise: y[i, j] ~ lognormal(log z[i, j], sigma).
// Priors: k ~ lognormal(log(0.04, 3e7, 1e4), 1), sigma ~ half-normal(0.1).
functions {
  vector robertson(real t, vector y, real k1, real k2, real k3) {
    vector[3] dydt;
    dydt[1] = -k1 * y[1] + k3 * y[2] * y[3];
    dydt[2] = k1 * y[1] - k3 * y[2] * y[3] - k2 * y[2] ^ 2;
    dydt[3] = k2 * y[2] ^ 2;
    return dydt;
  }
}
data {
  int<lower=1> N;
  array[N] real ts;
  array[N] vector[3] y;
  vector[3] y0;
  real rtol;
  real atol;
}
parameters {
  real<lower=0> k1;
  real<lower=0> k2;
  real<lower=0> k3;
  real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[3] z = ode_bdf_tol(robertson, y0, 0.0, ts, rtol, atol, 100000, k1, k2, k3);
}
model {
  k1 ~ lognormal(log(0.04), 1);
  k2 ~ lognormal(log(3e7), 1);
  k3 ~ lognormal(log(1e4), 1);
  sigma ~ normal(0, 0.1);
  for (i in 1:N) y[i] ~ lognormal(log(z[i]), sigma);
}
