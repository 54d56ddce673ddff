"""The drill workload with objects: dr_workload's records, plus object writes and reads (S3 via the app)."""

import dr_workload
from locust import task


class DrWorkloadWithObjects(dr_workload.DrWorkload):
    @task(1)
    def put_object(self) -> None:
        self.write_object()

    @task(1)
    def get_object(self) -> None:
        self.read_object()
