"""The document processor's metadata clients under active-active (seed 001): each client lives
near one region (homed there by routing latency) and writes document metadata to the global
table, half of it to a few hot keys every client writes (a document's status, its counters), so
the two regions' writes meet on the same keys; it reads back keys it wrote.
"""

from locust import constant, task

from drillkit.load.users import DrillUser


class MetadataClient(DrillUser):
    wait_time = constant(0.02)
    hot_keys = 8
    hot_share = 0.5

    @task(3)
    def put_metadata(self) -> None:
        self.write_item()

    @task(1)
    def get_metadata(self) -> None:
        self.read_item()
