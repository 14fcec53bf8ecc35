// The Stan case study "Predator-Prey Population Dynamics" (Carpenter 2018), with the solver's
// tolerances and step limit as data (ode_rk45 -> ode_rk45_tol; array syntax of Stan >= 2.33).
// Used by tests/reference/make_lv_reference.py and by the benchmark peer (benchmarks/peers.py).
functions {
  vector dz_dt(real t, vector z, array[] real theta) {
    vector[2] dz;
    dz[1] = (theta[1] - theta[2] * z[2]) * z[1];
    dz[2] = (-theta[3] + theta[4] * z[1]) * z[2];
    return dz;
  }
}
data {
  int<lower=0> N;
  array[N] real ts;
  array[2] real<lower=0> y_init;
  array[N, 2] real<lower=0> y;
  real rtol;
  real atol;
  int max_steps;
}
parameters {
  array[4] real<lower=0> theta;
  vector<lower=0>[2] z_init;
  array[2] real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[2] z = ode_rk45_tol(dz_dt, z_init, 0, ts, rtol, atol, max_steps, theta);
}
model {
  theta[{1, 3}] ~ normal(1, 0.5);
  theta[{2, 4}] ~ normal(0.05, 0.05);
  sigma ~ lognormal(-1, 1);
  z_init ~ lognormal(log(10), 1);
  for (k in 1:2) {
    y_init[k] ~ lognormal(log(z_init[k]), sigma[k]);
    y[:, k] ~ lognormal(log(z[:, k]), sigma[k]);
  }
}
