"""The chatbot's clients (seed 003): browser tabs that load the frontend's page, call the backend
API at the URL their cached config.json names, and upload and read documents.

Under routing config-json each user keeps its own copy of config.json for routing.ttl (drillkit
fetches it for the user, recorded as a `page` op), so after the runbook rewrites it each client
moves to the new backend only when its copy expires.
"""

from locust import constant, task

from drillkit.load.users import DrillUser


class ChatbotTab(DrillUser):
    wait_time = constant(0.05)

    @task(1)
    def page(self) -> None:
        self.load_page()

    @task(2)
    def ask(self) -> None:
        self.write_record()

    @task(1)
    def history(self) -> None:
        self.read_record()

    @task(1)
    def upload_document(self) -> None:
        self.write_object()
