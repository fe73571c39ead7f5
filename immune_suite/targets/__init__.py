"""Places the pipeline can promote to: `local` (supervisord + HAProxy) and Kubernetes stacks."""
