module github.com/active-immune-core/tests/cluster/probe

go 1.26.0
