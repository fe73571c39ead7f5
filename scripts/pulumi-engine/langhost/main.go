// Command pulumi-language-python is the engine's Python language host: it implements the LanguageRuntime
// gRPC service of sdk/v3 and runs Python programs and Python policy packs.
//
// Why this exists: the upstream host lives in its own Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) that the Go module proxy we can reach
// does not serve, so the project builds this host against sdk/v3 at the CLI's release instead. Programs are
// still executed by the upstream `pulumi-language-python-exec` shim shipped in the sdk/v3 module, so the
// Python side (settings, config, monitor connection) is exactly the SDK's own.
//
// Protocol, as the engine drives it: the engine starts this binary with its own gRPC address as the last
// argument, reads the port this process prints on stdout, then calls Run (programs) or RunPlugin (policy
// packs) with a ProgramInfo whose options come from Pulumi.yaml / PulumiPolicy.yaml `runtime.options`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is stamped at link time with the CLI release this host is built with.
var version = "0.0.0-dev"

const (
	execShimName = "pulumi-language-python-exec"
	// The shim exits with this code after it has shown the user an actionable error message.
	errorAlreadyShownExitCode = 32
)

func main() {
	// Flags the engine or a user may pass; tracing is accepted for compatibility and not used.
	flag.String("tracing", "", "Zipkin-compatible tracing endpoint (accepted, not used)")
	flag.String("root", "", "project root directory (accepted, not used: ProgramInfo carries it)")
	flag.Parse()

	engineAddress := ""
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[len(args)-1]
	}

	shim, err := findExecShim()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	host := &pythonHost{engineAddress: engineAddress, execShim: shim}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not start language host RPC server: %v\n", err)
		os.Exit(1)
	}
	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "language host RPC stopped serving: %v\n", err)
		os.Exit(1)
	}
}

// findExecShim locates the exec shim next to this binary (where scripts/pulumi-engine.sh installs it),
// falling back to $PATH.
func findExecShim() (string, error) {
	if self, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(self), execShimName)
		if info, statErr := os.Stat(candidate); statErr == nil && !info.IsDir() {
			return candidate, nil
		}
	}
	path, err := exec.LookPath(execShimName)
	if err != nil {
		return "", fmt.Errorf("could not find %s next to the language host or on $PATH: %w", execShimName, err)
	}
	return path, nil
}

type pythonHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu            sync.Mutex
	engineAddress string
	execShim      string
}

func (h *pythonHost) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

func (h *pythonHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if addr := req.GetEngineAddress(); addr != "" {
		h.mu.Lock()
		h.engineAddress = addr
		h.mu.Unlock()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *pythonHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetRequiredPlugins and GetRequiredPackages report no ahead-of-time plugins: resource plugins are loaded
// by the engine when the program registers a resource of that package, and scripts/pulumi-engine.sh
// installs them beforehand (automatic acquisition is off). Listing every pulumi package installed in the
// virtualenv, as the upstream host does, would make the engine load providers the program never uses.
func (h *pythonHost) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *pythonHost) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// Run executes a Pulumi program through the exec shim, which connects it to the resource monitor.
func (h *pythonHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	py, err := resolvePython(req.GetInfo())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	args := []string{"-u", h.execShim}
	add := func(flagName, value string) {
		if value != "" {
			args = append(args, "--"+flagName, value)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engine())
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("organization", req.GetOrganization())
	program := req.GetInfo().GetEntryPoint()
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	configJSON, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("serializing config: %w", err)
	}
	secretKeysJSON, err := json.Marshal(req.GetConfigSecretKeys())
	if err != nil {
		return nil, fmt.Errorf("serializing config secret keys: %w", err)
	}

	cmd := exec.CommandContext(ctx, py.executable, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = append(py.environ(os.Environ()),
		"PULUMI_CONFIG="+string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON),
	)
	// The engine relays this process's stdout/stderr; the program's output goes the same way.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) && exitErr.ExitCode() == errorAlreadyShownExitCode {
			// The shim already showed the user an actionable message; tell the engine not to add another.
			return &pulumirpc.RunResponse{Bail: true}, nil
		}
		return &pulumirpc.RunResponse{Error: describeExit(err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// RunPlugin runs a plugin written in Python (a policy pack): `python -u <dir> <args>` runs the pack's
// __main__.py, which prints its gRPC port on stdout for the engine.
func (h *pythonHost) RunPlugin(
	req *pulumirpc.RunPluginRequest, server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	py, err := resolvePython(req.GetInfo())
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	program := req.GetProgram()
	if program == "" {
		program = req.GetInfo().GetProgramDirectory()
	}
	args := append([]string{"-u", program}, req.GetArgs()...)
	cmd := exec.CommandContext(server.Context(), py.executable, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = py.environ(append(os.Environ(), req.GetEnv()...))

	var sendMu sync.Mutex
	send := func(resp *pulumirpc.RunPluginResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return server.Send(resp)
	}
	cmd.Stdout = streamWriter(func(b []byte) error {
		return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}})
	})
	cmd.Stderr = streamWriter(func(b []byte) error {
		return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}})
	})
	runErr := cmd.Run()
	code := 0
	if runErr != nil {
		var exitErr *exec.ExitError
		if !errors.As(runErr, &exitErr) {
			return fmt.Errorf("could not run plugin %s: %w", program, runErr)
		}
		code = exitErr.ExitCode()
	}
	return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(code)}})
}

type streamWriter func([]byte) error

func (w streamWriter) Write(p []byte) (int, error) {
	// gRPC may hold on to the slice after Send returns; copy it.
	chunk := make([]byte, len(p))
	copy(chunk, p)
	if err := w(chunk); err != nil {
		return 0, err
	}
	return len(p), nil
}

var _ io.Writer = streamWriter(nil)

// pythonRuntime is the interpreter chosen for one program and the virtualenv it belongs to, if any.
type pythonRuntime struct {
	executable string
	virtualenv string
}

func (p pythonRuntime) environ(base []string) []string {
	if p.virtualenv == "" {
		return base
	}
	env := make([]string, 0, len(base)+2)
	for _, kv := range base {
		if strings.HasPrefix(kv, "PYTHONHOME=") {
			continue // a PYTHONHOME leaking in would make the virtualenv's interpreter load another stdlib
		}
		if after, ok := strings.CutPrefix(kv, "PATH="); ok {
			kv = "PATH=" + filepath.Join(p.virtualenv, "bin") + string(os.PathListSeparator) + after
		}
		env = append(env, kv)
	}
	return append(env, "VIRTUAL_ENV="+p.virtualenv)
}

// resolvePython picks the interpreter the way the upstream host does for the pip toolchain: the
// `virtualenv` runtime option (relative to the project root), else $PULUMI_PYTHON_CMD, else python3.
func resolvePython(info *pulumirpc.ProgramInfo) (pythonRuntime, error) {
	options := info.GetOptions().AsMap()
	if toolchain, ok := options["toolchain"].(string); ok && toolchain != "" && toolchain != "pip" {
		return pythonRuntime{}, fmt.Errorf("python toolchain %q is not supported by this language host (use pip)", toolchain)
	}
	if venv, ok := options["virtualenv"].(string); ok && venv != "" {
		if !filepath.IsAbs(venv) {
			venv = filepath.Join(info.GetRootDirectory(), venv)
		}
		executable := filepath.Join(venv, "bin", "python")
		if _, err := os.Stat(executable); err != nil {
			return pythonRuntime{}, fmt.Errorf("the virtualenv %s has no bin/python (create it first): %w", venv, err)
		}
		return pythonRuntime{executable: executable, virtualenv: venv}, nil
	}
	name := os.Getenv("PULUMI_PYTHON_CMD")
	if name == "" {
		name = "python3"
	}
	executable, err := exec.LookPath(name)
	if err != nil {
		return pythonRuntime{}, fmt.Errorf("could not find %s on $PATH: %w", name, err)
	}
	return pythonRuntime{executable: executable}, nil
}

// describeExit turns a failed program run into the message the engine shows the user.
func describeExit(err error) string {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("Program exited on signal %s", ws.Signal())
		}
		return fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode())
	}
	return fmt.Sprintf("Problem executing program (could not run the language executor): %v", err)
}
