"""What the tests and the benchmarks share (not shipped): drills run and read back, hand-built
evidence, the leftover checks, the external key-value system, the fault clock.

    drills.py           a shipped scenario varied (variant), run through the CLI (run_drill), its
                        evidence read back (ops, first, served_again)
    running.py          a drill in the background, waited on event by event
    chaos_run.py        plain `chaos run` against `drillkit sandbox up`
    histories.py        hand-built evidence folders with exact answers (op, W, R, drill)
    sample_evidence.py  a synthetic drill folder of any size (report and history tests, benches)
    scenario_copy.py    a shipped scenario copied elsewhere with its paths made absolute
    leftovers.py        what a drill may leave behind (the no_leftovers fixture)
    kvsystem.py         tests/external_kv: a system drillkit did not build, and its drill scenario
    fault_clock.py      kill(2)'s own timestamp from strace
"""
