// vsm-vcsim: the project's launcher for govmomi's vCenter simulator.
//
// Upstream vcsim cannot be `go install`ed since govmomi v0.47 (it is a nested module with a
// local replace), so the test environment builds this small main against the simulator
// package instead. Besides the usual inventory flags it offers what the tests need:
//
//   - `-l 127.0.0.1:0` picks a free port; the real URL is printed on stdout.
//   - `-rename /DC0=src-dc` renames inventory objects after creation, so the source and
//     target vCenters have different inventories.
//   - `-add-datastore /DC0=src-ds` adds a local datastore to every host of a datacenter
//     (before renames). vcsim cannot rename datastores (no Rename_Task), and its generated
//     VMs live on LocalDS_0, so a differently named datastore is added instead.
//   - a control listener (`-control`) to rotate the accepted credentials, count login
//     attempts and terminate every session server-side.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	_ "github.com/vmware/govmomi/lookup/simulator"
	_ "github.com/vmware/govmomi/pbm/simulator"
	_ "github.com/vmware/govmomi/sts/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
)

type renames []string

func (r *renames) String() string     { return strings.Join(*r, ",") }
func (r *renames) Set(v string) error { *r = append(*r, v); return nil }

// credentials is the mutable login the simulator accepts; the control API rotates it.
type credentials struct {
	mu       sync.Mutex
	user     string
	password string
	attempts int
	failures int
}

func (c *credentials) valid(req *types.Login) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts++
	ok := req.UserName == c.user && req.Password == c.password
	if !ok {
		c.failures++
	}
	return ok
}

func main() {
	addr := flag.String("l", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	control := flag.String("control", "", "control API listen address (empty: disabled)")
	dc := flag.Int("dc", 1, "datacenters")
	cl := flag.Int("cluster", 1, "clusters per datacenter")
	host := flag.Int("host", 3, "hosts per cluster")
	sh := flag.Int("standalone-host", 1, "standalone hosts per datacenter")
	vm := flag.Int("vm", 2, "VMs per resource pool")
	ds := flag.Int("ds", 1, "datastores")
	folder := flag.Int("folder", 0, "folders per datacenter")
	pg := flag.Int("pg", 1, "dv portgroups per datacenter")
	user := flag.String("username", "user", "accepted username")
	pass := flag.String("password", "pass", "accepted password")
	cert := flag.String("tlscert", "", "PEM certificate file (default: the built-in test certificate)")
	key := flag.String("tlskey", "", "PEM key file")
	apiVersion := flag.String("api-version", "8.0.3.0", "About.ApiVersion")
	version := flag.String("product-version", "8.0.3", "About.Version")
	trace := flag.Bool("trace", false, "dump SOAP traffic to stderr")
	var rn renames
	flag.Var(&rn, "rename", "inventoryPath=newName, applied after creation (repeatable)")
	var addDS renames
	flag.Var(&addDS, "add-datastore", "datacenterPath=name: add a local datastore to its hosts (repeatable)")
	flag.Parse()

	opts := options{
		addr: *addr, control: *control, user: *user, pass: *pass, cert: *cert, key: *key,
		renames: rn, addDatastores: addDS,
	}
	simulator.Trace = *trace
	m := simulator.VPX()
	m.ServiceContent.About.ApiVersion = *apiVersion
	m.ServiceContent.About.Version = *version
	m.ServiceContent.About.FullName = "VMware vCenter Server " + *version
	m.Datacenter, m.Cluster, m.ClusterHost, m.Host = *dc, *cl, *host, *sh
	m.Machine, m.Datastore, m.Folder, m.Portgroup = *vm, *ds, *folder, *pg
	if err := run(m, opts); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

type options struct {
	addr, control, user, pass, cert, key string
	renames, addDatastores               renames
}

// run serves until SIGINT/SIGTERM; every exit path removes the simulator's temporary files.
func run(m *simulator.Model, o options) error {
	cfg := &tls.Config{}
	if o.cert != "" {
		c, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	if err := m.Create(); err != nil {
		return err
	}
	defer m.Remove()
	creds := &credentials{user: o.user, password: o.pass}
	m.Service.RegisterEndpoints = true
	m.Service.Listen = &url.URL{Host: o.addr, User: url.UserPassword(o.user, o.pass)}
	m.Map().SessionManager().ValidLogin = creds.valid
	m.Service.TLS = cfg
	s := m.Service.NewServer()
	defer s.Close()

	ctx := context.Background()
	admin, err := adminClient(ctx, s.URL, o.user, o.pass)
	if err != nil {
		return fmt.Errorf("self login: %w", err)
	}
	dsDirs, err := addDatastores(ctx, admin, o.addDatastores)
	defer func() {
		for _, d := range dsDirs {
			os.RemoveAll(d)
		}
	}()
	if err != nil {
		return err
	}
	if err := applyRenames(ctx, admin, o.renames); err != nil {
		return err
	}
	// Logins made by the launcher itself are not the tests' business.
	creds.mu.Lock()
	creds.attempts, creds.failures = 0, 0
	creds.mu.Unlock()

	if o.control != "" {
		ln, err := net.Listen("tcp", o.control)
		if err != nil {
			return err
		}
		defer ln.Close()
		go http.Serve(ln, controlAPI(admin, creds))
		fmt.Printf("VCSIM_CONTROL=http://%s\n", ln.Addr())
	}
	u := *s.URL
	u.User = nil
	fmt.Printf("VCSIM_URL=%s\n", u.String())
	fmt.Printf("VCSIM_THUMBPRINT_SHA256=%s\n", thumbprint(s.Certificate().Raw))
	fmt.Println("VCSIM_READY")
	os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

func thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// adminClient logs in to the simulator this process serves, over loopback: certificate
// verification would add nothing here, so it is skipped.
func adminClient(ctx context.Context, sdk *url.URL, user, pass string) (*govmomi.Client, error) {
	u := *sdk
	u.User = url.UserPassword(user, pass)
	return govmomi.NewClient(ctx, &u, true)
}

// addDatastores creates each requested datastore on every host of its datacenter, backed
// by a fresh temporary directory; it returns the directories for removal at exit.
func addDatastores(ctx context.Context, c *govmomi.Client, specs renames) ([]string, error) {
	var dirs []string
	finder := find.NewFinder(c.Client, false)
	for _, spec := range specs {
		dcPath, name, ok := strings.Cut(spec, "=")
		if !ok {
			return dirs, fmt.Errorf("-add-datastore %q: want datacenterPath=name", spec)
		}
		dc, err := finder.Datacenter(ctx, dcPath)
		if err != nil {
			return dirs, fmt.Errorf("-add-datastore %q: %w", spec, err)
		}
		v, err := view.NewManager(c.Client).CreateContainerView(ctx, dc.Reference(), []string{"HostSystem"}, true)
		if err != nil {
			return dirs, err
		}
		var hosts []mo.HostSystem
		err = v.Retrieve(ctx, []string{"HostSystem"}, []string{"name"}, &hosts)
		_ = v.Destroy(ctx)
		if err != nil {
			return dirs, err
		}
		dir, err := os.MkdirTemp("", "vsm-vcsim-ds-")
		if err != nil {
			return dirs, err
		}
		dirs = append(dirs, dir)
		for _, h := range hosts {
			host := object.NewHostSystem(c.Client, h.Reference())
			dss, err := host.ConfigManager().DatastoreSystem(ctx)
			if err != nil {
				return dirs, err
			}
			if _, err := dss.CreateLocalDatastore(ctx, name, dir); err != nil {
				return dirs, fmt.Errorf("-add-datastore %q on %s: %w", spec, h.Name, err)
			}
		}
	}
	return dirs, nil
}

func applyRenames(ctx context.Context, c *govmomi.Client, rn renames) error {
	finder := find.NewFinder(c.Client, false)
	for _, r := range rn {
		path, name, ok := strings.Cut(r, "=")
		if !ok {
			return fmt.Errorf("-rename %q: want inventoryPath=newName", r)
		}
		ref, err := finder.ManagedObjectList(ctx, path)
		if err != nil || len(ref) != 1 {
			return fmt.Errorf("-rename %q: %d objects at %s: %v", r, len(ref), path, err)
		}
		task, err := object.NewCommon(c.Client, ref[0].Object.Reference()).Rename(ctx, name)
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("-rename %q: %w", r, err)
		}
	}
	return nil
}

type stats struct {
	LoginAttempts int      `json:"loginAttempts"`
	LoginFailures int      `json:"loginFailures"`
	Sessions      []string `json:"sessions"`
}

// sessionKeys lists the SOAP sessions other than the launcher's own.
func sessionKeys(ctx context.Context, c *govmomi.Client) ([]string, string, error) {
	var sm mo.SessionManager
	pc := property.DefaultCollector(c.Client)
	if err := pc.RetrieveOne(ctx, *c.ServiceContent.SessionManager, []string{"sessionList", "currentSession"}, &sm); err != nil {
		return nil, "", err
	}
	own := ""
	if sm.CurrentSession != nil {
		own = sm.CurrentSession.Key
	}
	keys := []string{}
	for _, s := range sm.SessionList {
		if s.Key != own {
			keys = append(keys, s.Key)
		}
	}
	return keys, own, nil
}

func controlAPI(admin *govmomi.Client, creds *credentials) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		keys, _, err := sessionKeys(r.Context(), admin)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		creds.mu.Lock()
		st := stats{LoginAttempts: creds.attempts, LoginFailures: creds.failures, Sessions: keys}
		creds.mu.Unlock()
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /credentials", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Username, Password string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Username == "" {
			http.Error(w, "want {\"username\":...,\"password\":...}", http.StatusBadRequest)
			return
		}
		creds.mu.Lock()
		creds.user, creds.password = body.Username, body.Password
		creds.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /sessions/terminate", func(w http.ResponseWriter, r *http.Request) {
		keys, _, err := sessionKeys(r.Context(), admin)
		if err == nil && len(keys) > 0 {
			req := types.TerminateSession{This: *admin.ServiceContent.SessionManager, SessionId: keys}
			_, err = methods.TerminateSession(r.Context(), admin.Client, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]int{"terminated": len(keys)})
	})
	return mux
}
