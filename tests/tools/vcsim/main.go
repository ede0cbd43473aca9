// vsm-vcsim: the project's launcher for govmomi's vCenter simulator.
//
// Upstream vcsim cannot be `go install`ed since govmomi v0.47 (it is a nested module with a
// local replace), so the test environment builds this small main against the simulator
// package instead. Besides the usual inventory flags it offers what the tests need:
//
//   - `-l 127.0.0.1:0` picks a free port; the real URL is printed on stdout.
//   - `-rename /DC0=src-dc` renames inventory objects after creation, so the source and
//     target vCenters have different inventories.
//   - `-add-datastore /DC0=src-ds` adds a local datastore to every host of a datacenter, or
//     `-add-datastore /DC0/host/DC0_C1=src-ds-b` to every host of one compute cluster
//     (before renames). vcsim cannot rename datastores (no Rename_Task), and its generated
//     VMs live on LocalDS_0, so a differently named datastore is added instead.
//   - a clone that edits a disk of its source (the OpenShift machine actuator resizes the
//     template's disk so) edits the clone's own copy of that disk, as vCenter does; vcsim
//     would point the clone at the source's disk file, and destroying the clone would
//     delete the template's disk (see cloneDiskEdits).
//   - a control listener (`-control`) to rotate the accepted credentials, count login
//     attempts and terminate every session server-side, and for the cluster simulator:
//     make a template the OpenShift vSphere machine actuator can clone (`POST /templates`),
//     list the VMs with what their guest would see (`GET /vms`: BIOS UUID, power state,
//     hostname and ignition user data from `guestinfo.*`) and where they run (the inventory
//     path of their host's compute cluster, their datastores), give a VM a network card as the
//     installer's VMs have (`POST /vms/network`), and report a guest IP address as VMware
//     Tools would (`POST /vms/guest-ip`), and take privileges away from the accepted user on
//     one object and what inherits from it (`POST /permissions`).
//   - privileges answered from the roles and permissions set, as vCenter does (authz.go);
//     the accepted user holds the Admin role on the root folder.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
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
	flag.Var(&addDS, "add-datastore", "datacenterOrClusterPath=name: add a local datastore to its hosts (repeatable)")
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
	installAuthz(m)
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
	if err := grantAdmin(ctx, admin, o.user); err != nil {
		return fmt.Errorf("grant the user Admin: %w", err)
	}
	// Before any client but the launcher's own is told the URL.
	s.Config.Handler = cloneDiskEdits(admin, s.Config.Handler)
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

// addDatastores creates each requested datastore on every host of its datacenter or
// compute cluster, backed by a fresh temporary directory; it returns the directories for
// removal at exit.
func addDatastores(ctx context.Context, c *govmomi.Client, specs renames) ([]string, error) {
	var dirs []string
	finder := find.NewFinder(c.Client, false)
	for _, spec := range specs {
		path, name, ok := strings.Cut(spec, "=")
		if !ok {
			return dirs, fmt.Errorf("-add-datastore %q: want datacenterOrClusterPath=name", spec)
		}
		found, err := finder.ManagedObjectList(ctx, path)
		if err != nil || len(found) != 1 {
			return dirs, fmt.Errorf("-add-datastore %q: %d objects at %s: %v", spec, len(found), path, err)
		}
		parent := found[0].Object.Reference()
		if parent.Type != "Datacenter" && parent.Type != "ClusterComputeResource" {
			return dirs, fmt.Errorf("-add-datastore %q: %s is a %s, not a datacenter or compute cluster", spec, path, parent.Type)
		}
		v, err := view.NewManager(c.Client).CreateContainerView(ctx, parent, []string{"HostSystem"}, true)
		if err != nil {
			return dirs, err
		}
		var hosts []mo.HostSystem
		err = v.Retrieve(ctx, []string{"HostSystem"}, []string{"name"}, &hosts)
		_ = v.Destroy(ctx)
		if err != nil {
			return dirs, err
		}
		if len(hosts) == 0 {
			return dirs, fmt.Errorf("-add-datastore %q: no hosts in %s", spec, path)
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
		// The new account holds what the first one held, as an administrator would set it up.
		if err := grantAdmin(r.Context(), admin, body.Username); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		creds.mu.Lock()
		creds.user, creds.password = body.Username, body.Password
		creds.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /permissions", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Path    string   `json:"path"`
			Without []string `json:"without"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Path == "" {
			http.Error(w, "want {\"path\":...,\"without\":[privilege ids]}", http.StatusBadRequest)
			return
		}
		creds.mu.Lock()
		user := creds.user
		creds.mu.Unlock()
		if err := restrict(r.Context(), admin, body.Path, user, body.Without); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
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
	mux.HandleFunc("POST /templates", func(w http.ResponseWriter, r *http.Request) {
		var body templateSpec
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Folder == "" || body.Name == "" {
			http.Error(w, "want {\"folder\",\"name\",\"pool\",\"datastore\",\"diskGiB\"}", http.StatusBadRequest)
			return
		}
		uuid, err := ensureTemplate(r.Context(), admin, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"uuid": uuid})
	})
	mux.HandleFunc("GET /vms", func(w http.ResponseWriter, r *http.Request) {
		vms, err := listVMs(r.Context(), admin)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(vms)
	})
	mux.HandleFunc("POST /vms/network", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ UUID, Network string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.UUID == "" || body.Network == "" {
			http.Error(w, "want {\"uuid\":...,\"network\":...}", http.StatusBadRequest)
			return
		}
		if err := addNetworkCard(r.Context(), admin, body.UUID, body.Network); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /vms/guest-ip", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ UUID, IP string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.UUID == "" || body.IP == "" {
			http.Error(w, "want {\"uuid\":...,\"ip\":...}", http.StatusBadRequest)
			return
		}
		if err := setGuestIP(r.Context(), admin, body.UUID, body.IP); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// templateSpec is a template VM to make: what the OpenShift vSphere machine actuator
// requires of one (pkg/controller/vsphere/reconciler.go, clone): hardware version 15 or
// later, exactly one disk no larger than the machines' diskGiB. No network card: the
// actuator removes the template's cards and adds one per device of the provider spec; from
// a template with a card, vcsim's clone came out with two cards (and the actuator's update
// failed with "invalid network count: expected=1 current=2").
type templateSpec struct {
	Folder    string `json:"folder"`
	Name      string `json:"name"`
	Pool      string `json:"pool"`
	Datastore string `json:"datastore"`
	DiskGiB   int64  `json:"diskGiB"`
}

// ensureTemplate makes the template unless a VM of that name exists in the folder, and
// returns its BIOS UUID.
func ensureTemplate(ctx context.Context, c *govmomi.Client, t templateSpec) (string, error) {
	finder := find.NewFinder(c.Client, false)
	path := strings.TrimSuffix(t.Folder, "/") + "/" + t.Name
	if vm, err := finder.VirtualMachine(ctx, path); err == nil {
		return vm.UUID(ctx), nil
	}
	// Everything in the folder's datacenter.
	dcName, _, _ := strings.Cut(strings.TrimPrefix(t.Folder, "/"), "/")
	dc, err := finder.Datacenter(ctx, "/"+dcName)
	if err != nil {
		return "", fmt.Errorf("datacenter: %w", err)
	}
	finder.SetDatacenter(dc)
	folder, err := finder.Folder(ctx, t.Folder)
	if err != nil {
		return "", fmt.Errorf("folder: %w", err)
	}
	pool, err := finder.ResourcePool(ctx, t.Pool)
	if err != nil {
		return "", fmt.Errorf("resource pool: %w", err)
	}
	ds, err := finder.Datastore(ctx, t.Datastore)
	if err != nil {
		return "", fmt.Errorf("datastore: %w", err)
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return "", err
	}
	devices = append(devices, scsi)
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), ds.Reference(), ds.Path(t.Name+"/"+t.Name+".vmdk"))
	disk.CapacityInKB = max(t.DiskGiB, 1) * 1024 * 1024
	devices = append(devices, disk)
	changes, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return "", err
	}
	for _, ch := range changes {
		if ch.GetVirtualDeviceConfigSpec().Device == disk {
			ch.GetVirtualDeviceConfigSpec().FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		}
	}
	spec := types.VirtualMachineConfigSpec{
		Name:         t.Name,
		GuestId:      "rhel9_64Guest",
		Version:      "vmx-19",
		NumCPUs:      2,
		MemoryMB:     4096,
		Files:        &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds.Name())},
		DeviceChange: changes,
	}
	task, err := folder.CreateVM(ctx, spec, pool, nil)
	if err != nil {
		return "", err
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return "", fmt.Errorf("creating template %s: %w", path, err)
	}
	vm := object.NewVirtualMachine(c.Client, info.Result.(types.ManagedObjectReference))
	if err := vm.MarkAsTemplate(ctx); err != nil {
		return "", fmt.Errorf("marking %s as template: %w", path, err)
	}
	return vm.UUID(ctx), nil
}

// guestVM is a VM as the cluster simulator's kubelets see it.
type guestVM struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	PowerState string `json:"powerState"`
	// guestinfo.hostname, as the machine actuator sets it.
	Hostname string `json:"hostname,omitempty"`
	// guestinfo.ignition.config.data, decoded.
	UserData string `json:"userData,omitempty"`
	// Inventory path of the compute cluster (or standalone compute resource) of its host.
	ComputeCluster string `json:"computeCluster,omitempty"`
	// Names of the datastores its files are on.
	Datastores []string `json:"datastores"`
}

// listVMs lists every VM (templates left out).
func listVMs(ctx context.Context, c *govmomi.Client) ([]guestVM, error) {
	v, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, err
	}
	defer v.Destroy(ctx)
	var vms []mo.VirtualMachine
	props := []string{"name", "config.uuid", "config.template", "config.extraConfig", "runtime.powerState", "runtime.host", "datastore"}
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, props, &vms); err != nil {
		return nil, err
	}
	pc := property.DefaultCollector(c.Client)
	// Hosts and datastores are shared by many VMs: look each up once.
	clusterOf := map[types.ManagedObjectReference]string{}
	nameOf := map[types.ManagedObjectReference]string{}
	out := []guestVM{}
	for _, vm := range vms {
		if vm.Config == nil || vm.Config.Template {
			continue
		}
		g := guestVM{Name: vm.Name, UUID: strings.ToLower(vm.Config.Uuid), PowerState: string(vm.Runtime.PowerState), Datastores: []string{}}
		if h := vm.Runtime.Host; h != nil {
			path, seen := clusterOf[*h]
			if !seen {
				var host mo.HostSystem
				if err := pc.RetrieveOne(ctx, *h, []string{"parent"}, &host); err != nil {
					return nil, err
				}
				if host.Parent != nil {
					if path, err = find.InventoryPath(ctx, c.Client, *host.Parent); err != nil {
						return nil, err
					}
				}
				clusterOf[*h] = path
			}
			g.ComputeCluster = path
		}
		for _, ds := range vm.Datastore {
			name, seen := nameOf[ds]
			if !seen {
				var d mo.Datastore
				if err := pc.RetrieveOne(ctx, ds, []string{"name"}, &d); err != nil {
					return nil, err
				}
				name = d.Name
				nameOf[ds] = name
			}
			g.Datastores = append(g.Datastores, name)
		}
		encoding := ""
		var data string
		for _, o := range vm.Config.ExtraConfig {
			ov := o.GetOptionValue()
			value, _ := ov.Value.(string)
			switch ov.Key {
			case "guestinfo.hostname":
				g.Hostname = value
			case "guestinfo.ignition.config.data":
				data = value
			case "guestinfo.ignition.config.data.encoding":
				encoding = value
			}
		}
		if encoding == "base64" {
			if b, err := base64.StdEncoding.DecodeString(data); err == nil {
				data = string(b)
			}
		}
		g.UserData = data
		out = append(out, g)
	}
	return out, nil
}

// addNetworkCard gives the VM with BIOS UUID uuid a vmxnet3 card on the network of that
// name in its datacenter, unless it has a card already.
func addNetworkCard(ctx context.Context, c *govmomi.Client, uuid, network string) error {
	vm, err := vmByUUID(ctx, c, uuid)
	if err != nil {
		return err
	}
	devices, err := vm.Device(ctx)
	if err != nil {
		return err
	}
	if len(devices.SelectByType((*types.VirtualEthernetCard)(nil))) > 0 {
		return nil
	}
	finder := find.NewFinder(c.Client, false)
	ancestors, err := mo.Ancestors(ctx, c.Client, c.ServiceContent.PropertyCollector, vm.Reference())
	if err != nil {
		return err
	}
	for _, a := range ancestors {
		if a.Self.Type == "Datacenter" {
			finder.SetDatacenter(object.NewDatacenter(c.Client, a.Self))
		}
	}
	net, err := finder.Network(ctx, network)
	if err != nil {
		return err
	}
	backing, err := net.EthernetCardBackingInfo(ctx)
	if err != nil {
		return err
	}
	nic, err := object.EthernetCardTypes().CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return err
	}
	return vm.AddDevice(ctx, nic)
}

func vmByUUID(ctx context.Context, c *govmomi.Client, uuid string) (*object.VirtualMachine, error) {
	ref, err := object.NewSearchIndex(c.Client).FindByUuid(ctx, nil, uuid, true, nil)
	if err != nil {
		return nil, err
	}
	if ref == nil {
		return nil, fmt.Errorf("no VM with BIOS UUID %s", uuid)
	}
	return object.NewVirtualMachine(c.Client, ref.Reference()), nil
}

// setGuestIP reports ip as the guest's address on its first network card.
func setGuestIP(ctx context.Context, c *govmomi.Client, uuid, ip string) error {
	vm, err := vmByUUID(ctx, c, uuid)
	if err != nil {
		return err
	}
	spec := types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: "SET.guest.ipAddress", Value: ip}}}
	task, err := vm.Reconfigure(ctx, spec)
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

var (
	cloneThis      = regexp.MustCompile(`<_this type="VirtualMachine">([^<]+)</_this>`)
	cloneName      = regexp.MustCompile(`</folder><name>([^<]+)</name>`)
	cloneLocation  = regexp.MustCompile(`<location>.*?</location>`)
	cloneDatastore = regexp.MustCompile(`<datastore type="Datastore">([^<]+)</datastore>`)
	fileName       = regexp.MustCompile(`<fileName>([^<]*)</fileName>`)
)

// cloneDiskEdits rewrites CloneVM_Task requests: a device change that names a disk file of
// the source VM (an edit of its disk, e.g. a resize) names the clone's copy instead. vcsim
// copies the source's disks to "[<datastore>] <name>/<name>.vmdk" (then <name>_1.vmdk, ...,
// in device order) and applies the clone spec's device changes afterwards, taking a file
// name literally; vCenter applies them to the clone's copies.
func cloneDiskEdits(admin *govmomi.Client, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Body != nil {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if bytes.Contains(body, []byte("<CloneVM_Task")) {
				if fixed, err := rewriteClone(r.Context(), admin, body); err != nil {
					log.Printf("clone request left as is: %v", err)
				} else {
					body = fixed
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
}

func rewriteClone(ctx context.Context, admin *govmomi.Client, body []byte) ([]byte, error) {
	this, name := cloneThis.FindSubmatch(body), cloneName.FindSubmatch(body)
	if this == nil || name == nil {
		return nil, fmt.Errorf("no source VM or clone name")
	}
	var src mo.VirtualMachine
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: string(this[1])}
	pc := property.DefaultCollector(admin.Client)
	if err := pc.RetrieveOne(ctx, ref, []string{"config.hardware.device", "config.files.vmPathName"}, &src); err != nil {
		return nil, err
	}
	if src.Config == nil {
		return nil, fmt.Errorf("source VM without config")
	}
	var sourceFiles []string
	for _, d := range src.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				sourceFiles = append(sourceFiles, b.GetVirtualDeviceFileBackingInfo().FileName)
			}
		}
	}
	var dsPath object.DatastorePath
	dsPath.FromString(src.Config.Files.VmPathName)
	datastore := dsPath.Datastore
	if m := cloneDatastore.FindSubmatch(cloneLocation.Find(body)); m != nil {
		var ds mo.Datastore
		dsRef := types.ManagedObjectReference{Type: "Datastore", Value: string(m[1])}
		if err := pc.RetrieveOne(ctx, dsRef, []string{"name"}, &ds); err != nil {
			return nil, err
		}
		datastore = ds.Name
	}
	clone := string(name[1])
	copyOf := func(i int) string {
		if i == 0 {
			return fmt.Sprintf("[%s] %s/%s.vmdk", datastore, clone, clone)
		}
		return fmt.Sprintf("[%s] %s/%s_%d.vmdk", datastore, clone, clone, i)
	}
	return fileName.ReplaceAllFunc(body, func(m []byte) []byte {
		file := string(fileName.FindSubmatch(m)[1])
		for i, f := range sourceFiles {
			if f == file {
				return []byte("<fileName>" + copyOf(i) + "</fileName>")
			}
		}
		return m
	}), nil
}
