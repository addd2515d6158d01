"""Task runners, one subpackage per area (``imagenet``, ``ade20k``, ``coco``, ``retrieval``).

The protocols that name these runners are data (``benchmarks/<area>/<task>.yaml``, read by
:mod:`harmony_bench.protocols`); each runner implements :class:`harmony_bench.runner.TaskRunner`.
Nothing here is imported by the layers below: a runner is reached through its protocol's
``runner: "module:attr"`` string, so heavy stacks load only when their task runs.
"""
