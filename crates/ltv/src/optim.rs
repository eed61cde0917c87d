//! BFGS with a backtracking (Armijo) line search, for the few-parameter likelihoods here.
//!
//! The models are fitted over the logarithms of their parameters, so the search is
//! unconstrained; a parameter that runs off towards 0 or infinity shows up as a coordinate
//! beyond [`Options::bound`] and ends the search ([`Stop::OutOfBounds`]), which the fits
//! report as "not identified" rather than a number. Steps are capped at
//! [`Options::max_step`] per coordinate so one bold step cannot overflow `exp`.

/// How the search is run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub max_iterations: u32,
    /// Converged when every coordinate of the gradient is at most this in absolute value.
    pub gradient_tolerance: f64,
    /// A search that can no longer decrease the function by more than its floating-point
    /// noise (for [`STALLED`] steps in a row, or no step at all) still counts as converged
    /// when the gradient is at most this. The noise in `f` bounds how small a gradient can
    /// be confirmed: about √(ε·|f|·curvature), 1e-7 or so for an ill-conditioned likelihood.
    pub stall_tolerance: f64,
    /// The largest |coordinate| before the search stops with [`Stop::OutOfBounds`].
    pub bound: f64,
    /// The largest change of one coordinate in one step.
    pub max_step: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_iterations: 500,
            gradient_tolerance: 1e-9,
            stall_tolerance: 1e-6,
            bound: 25.0,
            max_step: 2.0,
        }
    }
}

/// Steps in a row that changed `f` by no more than 1e-14 of it before the search is
/// called stalled.
pub const STALLED: u32 = 3;

/// Why the search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Converged,
    MaxIterations,
    /// No step along the search direction (nor the steepest descent) decreased the function
    /// by more than its noise, and the gradient is above [`Options::stall_tolerance`].
    LineSearchFailed,
    /// A coordinate went beyond [`Options::bound`].
    OutOfBounds,
    /// The function or its gradient is not finite at the start.
    NonFinite,
}

/// Where the search ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<const N: usize> {
    pub x: [f64; N],
    pub f: f64,
    pub gradient: [f64; N],
    pub iterations: u32,
    pub stop: Stop,
}

fn dot<const N: usize>(a: &[f64; N], b: &[f64; N]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs<const N: usize>(a: &[f64; N]) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

fn identity<const N: usize>() -> [[f64; N]; N] {
    let mut h = [[0.0; N]; N];
    for (i, row) in h.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    h
}

/// Minimises `f`, which returns the value and the gradient, from `x0`.
pub fn minimize<const N: usize>(
    mut f: impl FnMut(&[f64; N]) -> (f64, [f64; N]),
    x0: [f64; N],
    o: &Options,
) -> Outcome<N> {
    let finite = |v: f64, g: &[f64; N]| v.is_finite() && g.iter().all(|x| x.is_finite());
    let mut x = x0;
    let (mut fx, mut g) = f(&x);
    let out = |x, f, gradient, iterations, stop| Outcome {
        x,
        f,
        gradient,
        iterations,
        stop,
    };
    if !finite(fx, &g) {
        return out(x, fx, g, 0, Stop::NonFinite);
    }
    // The inverse Hessian's approximation; `fresh` while it is still the identity.
    let mut h = identity::<N>();
    let mut fresh = true;
    let mut stalled = 0;
    for it in 0..o.max_iterations {
        if max_abs(&g) <= o.gradient_tolerance {
            return out(x, fx, g, it, Stop::Converged);
        }
        let mut d = [0.0; N];
        for i in 0..N {
            d[i] = -(0..N).map(|j| h[i][j] * g[j]).sum::<f64>();
        }
        if dot(&d, &g) >= 0.0 {
            h = identity();
            fresh = true;
            d = g.map(|v| -v);
        }
        let longest = max_abs(&d);
        if longest > o.max_step {
            d = d.map(|v| v * o.max_step / longest);
        }
        let slope = dot(&d, &g);
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let mut xn = x;
            for i in 0..N {
                xn[i] += step * d[i];
            }
            let (fnew, gnew) = f(&xn);
            if finite(fnew, &gnew) && fnew <= fx + 1e-4 * step * slope {
                accepted = Some((xn, fnew, gnew));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fnew, gnew)) = accepted else {
            if !fresh {
                // Start again from steepest descent before giving up.
                h = identity();
                fresh = true;
                continue;
            }
            let stop = if max_abs(&g) <= o.stall_tolerance {
                Stop::Converged
            } else {
                Stop::LineSearchFailed
            };
            return out(x, fx, g, it, stop);
        };
        if fx - fnew <= 1e-14 * fx.abs().max(1.0) {
            stalled += 1;
        } else {
            stalled = 0;
        }
        if stalled >= STALLED {
            let stop = if max_abs(&gnew) <= o.stall_tolerance {
                Stop::Converged
            } else {
                Stop::LineSearchFailed
            };
            return out(xn, fnew, gnew, it + 1, stop);
        }
        let mut s = [0.0; N];
        let mut y = [0.0; N];
        for i in 0..N {
            s[i] = xn[i] - x[i];
            y[i] = gnew[i] - g[i];
        }
        x = xn;
        fx = fnew;
        g = gnew;
        if max_abs(&x) > o.bound {
            return out(x, fx, g, it + 1, Stop::OutOfBounds);
        }
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if fresh {
                let scale = sy / dot(&y, &y);
                h = identity();
                for (i, row) in h.iter_mut().enumerate() {
                    row[i] = scale;
                }
                fresh = false;
            }
            // H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ
            let rho = 1.0 / sy;
            let mut hy = [0.0; N];
            for i in 0..N {
                hy[i] = (0..N).map(|j| h[i][j] * y[j]).sum();
            }
            let yhy = dot(&y, &hy);
            for i in 0..N {
                for j in 0..N {
                    h[i][j] += -rho * (hy[i] * s[j] + s[i] * hy[j])
                        + (rho * rho * yhy + rho) * s[i] * s[j];
                }
            }
        }
    }
    out(x, fx, g, o.max_iterations, Stop::MaxIterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_rosenbrock() {
        let rosen = |p: &[f64; 2]| {
            let (x, y) = (p[0], p[1]);
            let f = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
            let g = [
                -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
                200.0 * (y - x * x),
            ];
            (f, g)
        };
        let o = minimize(rosen, [-1.2, 1.0], &Options::default());
        assert_eq!(o.stop, Stop::Converged, "{o:?}");
        assert!(
            (o.x[0] - 1.0).abs() < 1e-6 && (o.x[1] - 1.0).abs() < 1e-6,
            "{o:?}"
        );
    }

    #[test]
    fn a_coordinate_running_off_stops_out_of_bounds() {
        // −x has no minimum: x runs off to infinity.
        let o = minimize(|p: &[f64; 1]| (-p[0], [-1.0]), [0.0], &Options::default());
        assert_eq!(o.stop, Stop::OutOfBounds, "{o:?}");
    }
}
