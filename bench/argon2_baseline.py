"""The login ceiling: argon2id verifies per second at the service's parameters, one thread per
core this process may run on (run it pinned like the server). Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

from argon2 import PasswordHasher, Type

from auth_service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    defaults = Settings.__struct_defaults__  # the service's own parameters, not a copy of them
    fields = dict(zip(Settings.__struct_fields__[-len(defaults) :], defaults, strict=True))
    hasher = PasswordHasher(
        time_cost=fields["argon2_time_cost"],
        memory_cost=fields["argon2_memory_kib"],
        parallelism=fields["argon2_parallelism"],
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
                "memory_kib": fields["argon2_memory_kib"],
                "time_cost": fields["argon2_time_cost"],
                "parallelism": fields["argon2_parallelism"],
            }
        )
    )


if __name__ == "__main__":
    main()
