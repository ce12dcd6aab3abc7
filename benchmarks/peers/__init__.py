"""Peer implementations that ``bench_peers.py`` runs against the engine.

``jax_diffrax``: the erf loss written in jax.numpy, gradient flow with diffrax's
Kvaerno4/5, Newton with ``jax.hessian``. ``scipy_minimize``: scipy's ``trust-exact``
and ``BFGS`` on the engine's closed-form loss, gradient and Hessian. ``matching``:
whether two end points are the same network up to the loss's symmetries.
"""
