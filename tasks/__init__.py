"""Built-in benchmarks: one file per task, registered with `@register_task`."""
