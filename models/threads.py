"""Thread settings for processes that serve recommendations."""

from __future__ import annotations


def one_blas_thread() -> None:
    """Limit numpy's BLAS to one thread for the rest of the process.

    A request multiplies small matrices (hundreds of candidates × 384 dims); spreading each
    product over BLAS threads costs more in wake-ups and spinning than it saves, and those
    threads compete with the other requests and workers for the cores. Measured on 2 cores:
    test-arm `recommend()` p50 24 ms with OpenBLAS's default threads, 4 ms with one.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
