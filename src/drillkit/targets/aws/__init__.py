"""The `aws` target: a real AWS system through boto3, safe by default (allowlisted account and
regions, every resource resolved before anything starts, `drillkit plan` that makes no mutating
call, CloudWatch alarms as stop conditions, every call in the evidence), and an emulated account
(emulated.py) to rehearse it offline on the sandbox's data plane."""
