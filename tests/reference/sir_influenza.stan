// Grinsztajn, Semenova, Margossian & Riou (2021), "Bayesian workflow for disease
// transmission modeling in Stan", Statistics in Medicine: the SIR model of the 1978
// boarding-school influenza outbreak (N = 763), cases in bed ~ neg_binomial_2(I, phi).
// The paper's program in current Stan syntax (integrate_ode_rk45 -> ode_rk45_tol, at 1e-8).
functions {
  vector sir(real t, vector y, real beta, real gamma, real N) {
    vector[3] dydt;
    real infection = beta * y[2] * y[1] / N;
    dydt[1] = -infection;
    dydt[2] = infection - gamma * y[2];
    dydt[3] = gamma * y[2];
    return dydt;
  }
}
data {
  int<lower=1> n_days;
  vector[3] y0;
  real t0;
  array[n_days] real ts;
  real N;
  array[n_days] int cases;
  real tol;
}
parameters {
  real<lower=0> gamma;
  real<lower=0> beta;
  real<lower=0> phi_inv;
}
transformed parameters {
  array[n_days] vector[3] y = ode_rk45_tol(sir, y0, t0, ts, tol, tol, 100000, beta, gamma, N);
  real phi = 1. / phi_inv;
}
model {
  beta ~ normal(2, 1);
  gamma ~ normal(0.4, 0.5);
  phi_inv ~ exponential(5);
  for (i in 1:n_days) cases[i] ~ neg_binomial_2(y[i, 2], phi);
}
