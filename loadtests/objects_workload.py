"""The drill workload with objects: records as in dr_workload, plus object writes and reads (S3 via the app)."""

from locust import constant, task

from drillkit.load.users import DrillUser


class DrWorkloadWithObjects(DrillUser):
    wait_time = constant(0.02)

    @task(1)
    def write(self) -> None:
        self.write_record()

    @task(1)
    def read(self) -> None:
        self.read_record()

    @task(1)
    def put_object(self) -> None:
        self.write_object()

    @task(1)
    def get_object(self) -> None:
        self.read_object()
