module github.com/active-immune-core/immunegateway

go 1.24
