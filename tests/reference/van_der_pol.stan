// Van der Pol oscillator with a large damping parameter mu (stiff), solved by Stan's BDF:
// y1' = y2, y2' = mu (1 - y1^2) y2 - y1 (Hairer & Wanner, Solving ODEs II, the classic stiff test);
// y1 observed with normal noise; mu ~ lognormal(log 10, 0.5), sigma ~ half-normal(0.5).
functions {
  vector vdp(real t, vector y, real mu) {
    vector[2] dydt;
    dydt[1] = y[2];
    dydt[2] = mu * (1 - y[1] ^ 2) * y[2] - y[1];
    return dydt;
  }
}
data {
  int<lower=1> N;
  array[N] real ts;
  vector[N] y;
  vector[2] y0;
  real tol;
}
parameters {
  real<lower=0> mu;
  real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[2] z = ode_bdf_tol(vdp, y0, 0.0, ts, tol, tol, 100000, mu);
}
model {
  mu ~ lognormal(log(10), 0.5);
  sigma ~ normal(0, 0.5);
  for (i in 1:N) y[i] ~ normal(z[i, 1], sigma);
}
