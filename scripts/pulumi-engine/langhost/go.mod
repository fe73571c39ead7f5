// The Python language host (pulumi-language-python) built on sdk/v3's gRPC definitions.
// Versions must agree with ../versions.env (scripts/pulumi-engine.sh checks this).
module activeimmunecore.local/pulumi-engine/langhost

go 1.26.6

require github.com/pulumi/pulumi/sdk/v3 v3.274.1
