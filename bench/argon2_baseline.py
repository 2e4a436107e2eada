"""The login ceiling: argon2id verifies per second at the service's parameters, one thread per
core this process may run on (run it pinned like the server). Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

from argon2 import PasswordHasher, Type

from auth_service.settings import PasswordSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    params = PasswordSettings()  # the service's own defaults, not a copy of them
    hasher = PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        type=Type.ID,
    )
    stored = hasher.hash("bench password 123")
    threads = len(os.sched_getaffinity(0))
    counts = [0] * threads
    deadline = time.perf_counter() + args.seconds

    def work(i: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(stored, "bench password 123")
            counts[i] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rps": sum(counts) / elapsed,
                "threads": threads,
                "memory_kib": params.memory_kib,
                "time_cost": params.time_cost,
                "parallelism": params.parallelism,
            }
        )
    )


if __name__ == "__main__":
    main()
