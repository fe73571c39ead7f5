"""The local stack: blue/green service processes under supervisord, behind HAProxy playing the Ingress."""
