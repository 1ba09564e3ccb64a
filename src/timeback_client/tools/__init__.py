"""The tools that ship with timeback-client, apart from the SDK an app imports.

- ``timeback-client demo``: the stateful story against an embedded emulator (`_demo`);
- ``timeback-client simulate``: a school of students against a backend (`_simulate`),
  and its report (`_report`);
- the simulated student both load tools drive, a plan of steps (`students`, public, so
  that a load test can bring its own behaviour and catalogue);
- the emulator in a process of its own, for load runs and benchmarks (`_emulator_process`);
- the command line itself (`_cli`).

None of it is imported by ``timeback_client``; each needs the ``emulator`` extra.
"""
