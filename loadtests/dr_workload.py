"""The drill workload: unique-key writes with a SHA-256 payload checksum, and reads of acknowledged keys."""

from locust import constant, task

from drillkit.load.users import DrillUser


class DrWorkload(DrillUser):
    wait_time = constant(0.02)

    @task(1)
    def write(self) -> None:
        self.write_record()

    @task(1)
    def read(self) -> None:
        self.read_record()
