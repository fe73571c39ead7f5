// Wrapper module that builds the pulumi CLI (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi).
// pkg/v3 and sdk/v3 are required at the same release; pkg/v3's own replace directives are repeated
// here because a dependency's replace directives are ignored by the main module.
// Versions must agree with ../versions.env (scripts/pulumi-engine.sh checks this).
module activeimmunecore.local/pulumi-engine/cli

go 1.26.6

require (
	github.com/pulumi/pulumi/pkg/v3 v3.274.1
	github.com/pulumi/pulumi/sdk/v3 v3.274.1
)

// pkg/v3's go.mod: replace github.com/pulumi/pulumi/sdk/v3 => ../sdk (covered by the require above)
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e

tool github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
