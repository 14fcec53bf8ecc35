"""Render every bayesode plot of a small fit to PNG, to look at by eye (and for CI to inspect).

    python docs/gallery/make_gallery.py                  # writes docs/gallery/*.png
    python docs/gallery/make_gallery.py --out /tmp/g     # elsewhere

The fit: the Lotka-Volterra preset on the bundled lynx-hare data, NUTS with 2 chains of
150 warmup + 150 draws (small: the gallery shows what the plots look like, not a converged
answer). ``render_gallery`` draws the plots of any posterior; ``tests/test_plots.py`` calls it on
a hand-made posterior and checks each figure's labels, legend and size.
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bayesode as bo  # noqa: E402

DPI = 120  # what `bayesode fit` writes


def render_gallery(post, out_dir, *, key, until=None, prior_draws: int = 100, num_points: int = 200) -> dict:
    """Draw each plot of ``post`` and save it as ``out_dir/<name>.png``.

    Returns ``{name: Axes or array of Axes}`` (the figures stay open for inspection; close them
    with ``plt.close("all")``). ``until``: forecast horizon (default a quarter of the data span
    past the last observation); ``num_points``: times per predicted curve.
    """
    os.makedirs(out_dir, exist_ok=True)
    d = post.data
    span = float(d.ts.max() - d.t0.min())
    until = float(d.ts.max()) + 0.25 * span if until is None else until
    k_traj, k_phase, k_prior = (key + i for i in range(3))
    drawn = {
        "prior_predictive": bo.plot_prior_predictive(post.model, d, key=k_prior, num_draws=prior_draws,
                                                      num_points=num_points),
        "trajectories": bo.plot_trajectories(post, until=until, num_points=num_points, key=k_traj),
        "phase": bo.plot_phase(post, until=until, num_points=num_points, key=k_phase),
        "vector_field": bo.plot_vector_field(post),
    }
    for name, ax in drawn.items():
        first = ax.ravel()[0] if hasattr(ax, "ravel") else ax
        first.figure.savefig(os.path.join(out_dir, f"{name}.png"), dpi=DPI)
    return drawn


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    bo.enable_compilation_cache()
    data = bo.datasets.load("lynx_hare").to_data()
    model = bo.models.lotka_volterra()
    post = bo.run_nuts(model, data, key=a.seed, num_warmup=150, num_samples=150, num_chains=2, progress=False)
    render_gallery(post, a.out, key=a.seed + 1)
    plt.close("all")
    print(f"wrote {sorted(f for f in os.listdir(a.out) if f.endswith('.png'))} to {a.out}")


if __name__ == "__main__":
    main()
