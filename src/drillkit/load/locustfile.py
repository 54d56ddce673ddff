"""The locustfile for a workload mapping (scenario `load.workload`): Locust loads this file, never
drillkit itself, so reading the mapping here is the locustfile's work, not an import side effect."""

from locust import constant

from drillkit.load.users import DrillUser, MappedUser

_WORKLOAD = MappedUser.from_environment()
_TASKS = {"write": DrillUser.write_record, "read": DrillUser.read_record, "delete": DrillUser.delete_record,
          "obj_write": DrillUser.write_object, "obj_read": DrillUser.read_object}


class MappedWorkload(MappedUser):
    workload = _WORKLOAD
    payload_bytes = _WORKLOAD.payload_bytes
    wait_time = constant(_WORKLOAD.wait)
    tasks = {_TASKS[op]: weight for op, weight in _WORKLOAD.tasks().items()}
