#!/usr/bin/env python3
"""How much the Euler sampler alone narrows the draws: for a gene whose conditional
distribution is N(mu, sigma^2) (z units), the exact flow-matching velocity of the linear path
x_t = t*x1 + (1-t)*x0 is linear in x_t, so the sampler's output is x0 times a product of
per-step factors. This prints, per sigma, the sd of Euler's output over sigma, on the
sampler's grid (runtime/src/sampler.rs::time_grid: linspace(0, 1, T)), for T time points.

    scripts/bench/euler_spread.py [T ...]      (default: 20, the sampler's default, and 100)
"""
import sys


def spread_ratio(sigma, points):
    ts = [i / (points - 1) for i in range(points)]
    x = 1.0
    for t0, t1 in zip(ts[:-1], ts[1:]):
        # E[x1 - x0 | x_t] for x1 ~ N(0, s^2), x0 ~ N(0, 1): a(t) * x_t
        a = (t0 * sigma**2 - (1 - t0)) / (t0**2 * sigma**2 + (1 - t0) ** 2)
        x *= 1 + (t1 - t0) * a
    return abs(x) / sigma


def main():
    points = [int(a) for a in sys.argv[1:]] or [20, 100]
    sigmas = [1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1]
    print("sd(Euler output) / sigma, exact velocity")
    print("time points | " + " | ".join(f"sigma {s}" for s in sigmas))
    for t in points:
        print(f"{t} | " + " | ".join(f"{spread_ratio(s, t):.3f}" for s in sigmas))


if __name__ == "__main__":
    main()
