package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/daemon"
)

func dial(cmd *cobra.Command) (*daemon.Client, error) {
	id, _ := cmd.Flags().GetString("run")
	return daemon.Dial(cmd.Context(), id)
}

// kindName splits kubectl's "TYPE NAME" or "TYPE/NAME" argument forms.
func kindName(args []string) (kind, name string, err error) {
	switch {
	case len(args) == 1 && strings.Contains(args[0], "/"):
		kind, name, _ = strings.Cut(args[0], "/")
	case len(args) == 2:
		kind, name = args[0], args[1]
	default:
		return "", "", fmt.Errorf("want TYPE NAME or TYPE/NAME, got %q", strings.Join(args, " "))
	}
	if kind == "" || name == "" {
		return "", "", fmt.Errorf("want TYPE NAME or TYPE/NAME, got %q", strings.Join(args, " "))
	}
	return kind, name, nil
}

// show returns a function printing a daemon's answer, or returning its error:
// show(cmd)(c.Get(...)).
func show(cmd *cobra.Command) func(string, error) error {
	return func(out string, err error) error {
		// Output and an error together: what was found, then what was not
		// (kubectl get with a missing name among several).
		if out != "" {
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimRight(out, "\n"))
		}
		return err
	}
}

func newApply() *cobra.Command {
	var files []string
	var namespace string
	cmd := &cobra.Command{
		Use:   "apply -f FILENAME",
		Short: "Apply manifests to the running simulation (all or nothing)",
		Long: `apply validates every object first, as the API server does; if any object is
invalid, nothing changes and every error is listed with its field path. It
returns once every node's proxy has programmed the change.

The manifests are read here (files, the manifest files of a directory, or
standard input for -) and sent to the simulation as they are.`,
		Example: `  sudo svcsim apply -f myhttp-v2-service.yaml
  cat svc.yaml | sudo svcsim apply -f -
  sudo svcsim apply -n demo -f app/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("must specify -f (a file, a directory, or - for stdin)")
			}
			ms, err := plane.ReadManifests(cmd.InOrStdin(), files...)
			if err != nil {
				return err
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Apply(cmd.Context(), daemon.ApplyRequest{Namespace: namespace, Manifests: ms}))
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory, or - (repeatable)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace for objects that name none (default \"default\")")
	return cmd
}

// getFlags are the flags get and describe share with kubectl.
type getFlags struct {
	output, namespace, selector string
	all                         bool
}

func (g *getFlags) query(args []string, describe bool) url.Values {
	q := url.Values{"arg": args, "namespace": {g.namespace}, "output": {g.output}, "selector": {g.selector}}
	if g.all {
		q.Set("all", "true")
	}
	if describe {
		q.Set("describe", "true")
	}
	return q
}

func (g *getFlags) register(cmd *cobra.Command, output bool) {
	if output {
		cmd.Flags().StringVarP(&g.output, "output", "o", "", "output format: wide, name, yaml, json")
	}
	cmd.Flags().StringVarP(&g.namespace, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().StringVarP(&g.selector, "selector", "l", "", "label selector, e.g. app=getip")
	cmd.Flags().BoolVarP(&g.all, "all-namespaces", "A", false, "list across all namespaces")
}

func newGet() *cobra.Command {
	var g getFlags
	cmd := &cobra.Command{
		Use:   "get TYPE[,TYPE...] [NAME...] | TYPE/NAME...",
		Short: "Show nodes, pods, services, endpoints, endpointslices, deployments, daemonsets or ingresses",
		Long: `get prints kubectl's tables of the simulation's objects. It takes kubectl's
argument forms: a type (list), a type and several names, several types
separated by commas, or type/name arguments; -n, -A, -l and -o
wide|name|yaml|json. Names that do not exist are reported after the
others are printed, with a non-zero exit.`,
		Example: `  sudo svcsim get pods -o wide -l app=getip
  sudo svcsim get svc ext-name lb
  sudo svcsim get svc/getip-service pod/client -o name
  sudo svcsim get svc,ep -A
  sudo svcsim get endpointslices -l kubernetes.io/service-name=getip-service
  sudo svcsim get svc -o wide -n ingress-nginx`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Get(cmd.Context(), g.query(args, false)))
		},
	}
	g.register(cmd, true)
	return cmd
}

func newDescribe() *cobra.Command {
	var g getFlags
	cmd := &cobra.Command{
		Use:   "describe TYPE [NAME...] | TYPE/NAME...",
		Short: "Show the details of Services, Pods, Nodes or Endpoints, as kubectl describe does",
		Long: `describe prints kubectl describe's account of each object: for a Service its
selector, type, IPs, and per port the target port, node port and ready
endpoints; for a Pod its node, status, IPs, containers (image, ports, state,
probes, environment, mounts) and conditions; for a Node its conditions,
addresses, capacity, system info and pods; for Endpoints its subsets. Without
a name it describes every object of the type (-l narrows). svcsim records
no events.`,
		Example: `  sudo svcsim describe svc myhttp-v2-service
  sudo svcsim describe pods -l app=getip
  sudo svcsim describe node/node1`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Get(cmd.Context(), g.query(args, true)))
		},
	}
	g.register(cmd, false)
	return cmd
}

func newPatch() *cobra.Command {
	var patch, namespace string
	cmd := &cobra.Command{
		Use:     "patch TYPE NAME -p PATCH",
		Short:   "Update fields of an object with a strategic merge patch",
		Example: `  sudo svcsim patch svc getip-service -p '{"spec":{"sessionAffinity":"ClientIP"}}'`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindName(args)
			if err != nil {
				return err
			}
			if patch == "" {
				return fmt.Errorf("must specify -p")
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Patch(cmd.Context(), kind, namespace, name, []byte(patch)))
		},
	}
	cmd.Flags().StringVarP(&patch, "patch", "p", "", "the patch, as JSON or YAML")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	return cmd
}

func newScale() *cobra.Command {
	var replicas int
	var namespace string
	cmd := &cobra.Command{
		Use:     "scale TYPE NAME --replicas=N",
		Short:   "Set a Deployment's number of replicas",
		Example: `  sudo svcsim scale deployment getip-deployment --replicas 3`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindName(args)
			if err != nil {
				return err
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas is required and must be >= 0")
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Scale(cmd.Context(), kind, namespace, name, replicas))
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", -1, "the new number of replicas")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	return cmd
}

func newDelete() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:     "delete TYPE NAME",
		Short:   "Delete an object (a pod's Deployment replaces it)",
		Example: `  sudo svcsim delete pod getip-deployment-c6b88c56b-pks5t`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindName(args)
			if err != nil {
				return err
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Delete(cmd.Context(), kind, namespace, name))
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	return cmd
}

func newLabel() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:     "label TYPE NAME KEY=VALUE... | KEY-",
		Short:   "Set or remove labels (a node's labels steer DaemonSets)",
		Example: `  sudo svcsim label node node1 isIngress="true"`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var kind, name string
			var labels []string
			if strings.Contains(args[0], "/") {
				kind, name, _ = strings.Cut(args[0], "/")
				labels = args[1:]
			} else {
				if len(args) < 3 {
					return fmt.Errorf("want TYPE NAME KEY=VALUE...")
				}
				kind, name, labels = args[0], args[1], args[2:]
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Label(cmd.Context(), kind, namespace, name, labels))
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	return cmd
}

func newExec() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "exec TARGET -- COMMAND [ARGS...]",
		Short: "Run a real command inside a pod, a node or the external client's namespace",
		Long: `exec runs COMMAND in TARGET's network namespace with your terminal attached and
exits with its status. TARGET is a pod name, a node name (node1) or "external"
(the client outside the cluster that reaches NodePorts).`,
		Example: `  sudo svcsim exec external -- curl http://198.18.0.11:30080/info
  sudo svcsim exec node1 -- iptables-save -t nat
  sudo svcsim exec client -- curl http://getip-service/info`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needRoot("exec"); err != nil {
				return err
			}
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("want TARGET -- COMMAND [ARGS...]")
			}
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			t, err := c.Target(cmd.Context(), args[0], namespace)
			if err != nil {
				return err
			}
			return execIn(cmd.Context(), t, args[1:])
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "the pod's namespace (default \"default\")")
	return cmd
}

// execIn runs argv inside the target's network namespace with this process's
// stdio. For pods it goes through the svcsim-exec entry point, which gives
// the command the pod's resolv.conf in a private mount namespace (as `ip
// netns exec` does with /etc/netns) and the pod's environment.
func execIn(ctx context.Context, t daemon.Target, argv []string) error {
	ns, err := netns.Get(t.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	var c *exec.Cmd
	if t.ResolvConf != "" {
		if c, err = reexec.Command("svcsim-exec", append([]string{t.ResolvConf}, argv...)...); err != nil {
			return err
		}
		c.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	} else {
		c = exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Env = os.Environ()
	}
	c.Env = append(c.Env, t.Env...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	return runStatus(ns.Do(c.Run))
}

// execEntry runs in a fresh mount namespace: it bind-mounts the pod's
// resolv.conf over /etc/resolv.conf (privately, so the host never sees it)
// and replaces itself with the command.
func execEntry() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "svcsim-exec: want RESOLV_CONF COMMAND [ARGS...]")
		os.Exit(2)
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SLAVE, ""); err != nil {
		fmt.Fprintln(os.Stderr, "svcsim-exec: make mounts private:", err)
		os.Exit(126)
	}
	if err := syscall.Mount(os.Args[1], "/etc/resolv.conf", "", syscall.MS_BIND, ""); err != nil {
		fmt.Fprintln(os.Stderr, "svcsim-exec: bind resolv.conf:", err)
		os.Exit(126)
	}
	path, err := exec.LookPath(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "svcsim-exec:", err)
		os.Exit(127)
	}
	err = syscall.Exec(path, os.Args[2:], os.Environ())
	fmt.Fprintln(os.Stderr, "svcsim-exec:", err)
	os.Exit(126)
}

func init() { reexec.Register("svcsim-exec", execEntry) }

func newDump() *cobra.Command {
	return &cobra.Command{
		Use:     "dump NODE",
		Short:   "Print a node's proxy rules as the real tool shows them",
		Example: `  sudo svcsim dump node1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd)
			if err != nil {
				return err
			}
			return show(cmd)(c.Dump(cmd.Context(), args[0]))
		},
	}
}
