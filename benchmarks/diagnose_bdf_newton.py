"""Why the stiff phase refactorizes so often: scipy's BDF keeps a Jacobian from a far point.

Usage: python benchmarks/diagnose_bdf_newton.py K N SEED [MAX_REPORTS]

Runs one Glorot run (erf, one BLAS thread) and watches every Newton solve of scipy's BDF
(the stiff phase, ``copyaverage.ode.Float32BDF``). For each failed solve at a moderate
step (c = h / alpha < 300) it repeats the solve with a Jacobian evaluated afresh at that
step's predicted point (float64 LU) and prints the scaled Newton corrections of both:
scipy's, with the Jacobian it kept, and the fresh one's. Prints a summary at the end.

Finding (2026-12-02, k = 70, n = 32, seed 0; idle 2-core machine): 240 of 467 Newton
solves fail. After the step grows (by up to 10x a step), Newton fails, scipy evaluates
the Jacobian at that step's *predicted* point, fails again and then halves the step up to
ten times in a row *without re-evaluating the Jacobian* (its ``current_jac`` flag stays
set), each halving a new factorization. With a fresh Jacobian at the predicted point of
each halved step, the same Newton solves converge at once (corrections falling by about
10^-3 per iteration). Factorizing in float64 or refining the float32 solves changes
nothing (same 304 factorizations), so the precision of the factor is not the cause.
"""
import os
import sys

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one BLAS thread, as the sweep workers run (before numpy loads)

import numpy as np  # noqa: E402
import scipy.integrate._ivp.bdf as scipy_bdf  # noqa: E402
import scipy.linalg as sla  # noqa: E402

from copyaverage.derivatives import Objective  # noqa: E402
from copyaverage.flow import gradient_flow  # noqa: E402
from copyaverage.sweep import RunSpec  # noqa: E402

k, n, seed = map(int, sys.argv[1:4])
max_reports = int(sys.argv[4]) if len(sys.argv) > 4 else 12
spec = RunSpec("erf", k, n, seed, "glorot")
objective = Objective(spec.teacher(), "erf", n)
scipy_solve = scipy_bdf.solve_bdf_system
counts = dict(solves=0, failed=0, fresh_converged=0, reported=0)


def fresh_newton(fun, t_new, y_predict, c, psi, scale, iterations=4):
    """Scaled Newton corrections with the Jacobian -H evaluated at y_predict."""
    J = -objective.hessian(y_predict)
    factor = sla.lu_factor(np.eye(J.shape[0]) - c * J)
    y, d, norms = y_predict.copy(), 0.0, []
    for _ in range(iterations):
        dy = sla.lu_solve(factor, c * fun(t_new, y) - psi - d)
        norms.append(float(np.linalg.norm(dy / scale) / np.sqrt(dy.size)))
        y, d = y + dy, d + dy
    return norms


def watched(fun, t_new, y_predict, c, psi, LU, solve_lu, scale, tol):
    result = scipy_solve(fun, t_new, y_predict, c, psi, LU, solve_lu, scale, tol)
    counts["solves"] += 1
    if not result[0]:
        counts["failed"] += 1
        if c < 300 and counts["reported"] < max_reports:
            counts["reported"] += 1
            norms = fresh_newton(fun, t_new, y_predict, c, psi, scale)
            counts["fresh_converged"] += norms[-1] < tol
            print(f"t = {t_new:9.1f}  c = {c:8.2f}  scipy failed; fresh Jacobian: "
                  + " ".join(f"{x:.1e}" for x in norms), flush=True)
    return result


scipy_bdf.solve_bdf_system = watched
a0, W0 = spec.start()
run = gradient_flow(a0, W0, spec.teacher(), "erf", max_time=3600, **dict(spec.options))
print(f"converged {run.converged}; Newton solves {counts['solves']}, failed "
      f"{counts['failed']}; of the {counts['reported']} failures re-solved with a fresh "
      f"Jacobian, {counts['fresh_converged']} converge; factorizations {run.stats['nlu']}, "
      f"Jacobians {run.stats['njev']}")
