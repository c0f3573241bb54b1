"""Thread settings for processes that serve recommendations or build training rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from threadpoolctl import threadpool_limits


def one_blas_thread() -> threadpool_limits:
    """Limit numpy's BLAS to one thread: for the rest of the process, or only inside a `with`
    block on the returned limiter (training builds its rows that way).

    A request multiplies small matrices (hundreds of candidates × 384 dims); spreading each
    product over BLAS threads costs more in wake-ups and spinning than it saves, and those
    threads compete with the other requests and workers for the cores. Measured on 2 cores:
    test-arm `recommend()` p50 24 ms with OpenBLAS's default threads, 4 ms with one; the test
    arm's training rows of three cutoffs on the demo world 91 s with the default threads, 19 s
    with one, the same rows bit for bit (the products are split by rows, never inside a dot
    product).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
