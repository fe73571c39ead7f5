// Command probe is the tiny test workload of tests/cluster: a static HTTP server (no shell, no libc)
// plus two client modes that `kubectl exec` runs inside a pod.
//
//	probe                  serve on :8080; GET / answers "hello from <hostname>"
//	probe get URL          HTTP GET with a 3 s timeout; prints the body; exit 1 unless 200
//	probe dial HOST:PORT   TCP connect with a 3 s timeout; exit 1 on failure
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const timeout = 3 * time.Second

func serve() error {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: timeout}
	// As PID 1 a process gets no default signal actions: stop on SIGTERM ourselves so that pod
	// deletion does not wait out the grace period.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

func get(url string) error {
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Print(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func dial(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	fmt.Printf("connected to %s\n", addr)
	return conn.Close()
}

func main() {
	var err error
	switch {
	case len(os.Args) == 1:
		err = serve()
	case len(os.Args) == 3 && os.Args[1] == "get":
		err = get(os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "dial":
		err = dial(os.Args[2])
	default:
		err = fmt.Errorf("usage: probe [get URL | dial HOST:PORT]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}
