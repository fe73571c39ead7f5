"""Clients of the platform's external services (RTE, IP intelligence, Ethical AI, Memory service,
Adaptive Immunity service, Treg service): each optional, each degrading to a named fallback.

See ``base`` for the call's resilience (timeouts, retries, circuit breaker, bulkhead, contract) and
docs/service.md, "External services", for what the core does with and without each.
"""
