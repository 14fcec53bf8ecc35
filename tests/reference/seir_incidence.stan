// An SEIR outbreak observed through incidence, as in the SEIR section of Grinsztajn, Semenova,
// Margossian & Riou (2021), "Bayesian workflow for disease transmission modeling in Stan":
// new cases in (t_{i-1}, t_i] are the onsets of infectiousness there, the fall of S + E, with
// t_{-1} = t0 (the first difference from the initial state). Known population N and latent
// rate a; all cases reported (the paper's p_reported and time-varying beta left out).
// cases ~ neg_binomial_2(incidence, phi); priors as the paper's.
functions {
  vector seir(real t, vector y, real beta, real gamma, real a, real N) {
    vector[4] dydt;
    real infection = beta * y[3] * y[1] / N;
    dydt[1] = -infection;
    dydt[2] = infection - a * y[2];
    dydt[3] = a * y[2] - gamma * y[3];
    dydt[4] = gamma * y[3];
    return dydt;
  }
}
data {
  int<lower=1> n_days;
  vector[4] y0;
  real t0;
  array[n_days] real ts;
  real N;
  real a;
  array[n_days] int cases;
  real tol;
}
parameters {
  real<lower=0> beta;
  real<lower=0> gamma;
  real<lower=0> phi_inv;
}
transformed parameters {
  array[n_days] vector[4] y = ode_rk45_tol(seir, y0, t0, ts, tol, tol, 100000, beta, gamma, a, N);
  vector[n_days] incidence;
  incidence[1] = (y0[1] + y0[2]) - (y[1, 1] + y[1, 2]);
  for (i in 2:n_days) incidence[i] = (y[i - 1, 1] + y[i - 1, 2]) - (y[i, 1] + y[i, 2]);
  real phi = 1. / phi_inv;
}
model {
  beta ~ normal(2, 1);
  gamma ~ normal(0.4, 0.5);
  phi_inv ~ exponential(5);
  cases ~ neg_binomial_2(incidence, phi);
}
