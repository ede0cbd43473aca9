// machine-api-webhooks serves the machine-api admission webhooks of
// github.com/openshift/machine-api-operator (its pkg/webhooks: the Machine and MachineSet
// defaulters and validators) on a listen address of our choosing.
//
// Upstream serves them from cmd/machineset, whose webhook server listens on every interface
// (controller-runtime's webhook.Options.Host is left empty and there is no flag for it). The
// test environment may only listen on loopback, so it runs cmd/machineset with
// --webhook-enabled=false and this program instead: the same handlers, built by the same
// constructors with the same feature gates and registered at the same paths as
// cmd/machineset does, in a controller-runtime manager whose webhook server listens on
// --webhook-host. Nothing else differs.
//
// With --print-configurations it prints, as a JSON list, the ValidatingWebhookConfiguration
// and MutatingWebhookConfiguration machine-api-operator installs for these webhooks (from the
// same package) and exits, so the test environment registers exactly those.
package main

import (
	"encoding/json"
	"flag"
	"os"
	"strings"

	apifeatures "github.com/openshift/api/features"
	"github.com/openshift/library-go/pkg/features"
	mapiwebhooks "github.com/openshift/machine-api-operator/pkg/webhooks"
	"k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/manager/signals"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

func main() {
	ctrl.SetLogger(klog.NewKlogr())
	klog.InitFlags(nil)
	if err := flag.Set("logtostderr", "true"); err != nil {
		klog.Fatalf("failed to set logtostderr flag: %v", err)
	}
	watchNamespace := flag.String("namespace", "", "Namespace whose objects (credentials Secrets) the validators read; all when empty.")
	webhookHost := flag.String("webhook-host", "127.0.0.1", "Address the webhook server listens on.")
	webhookPort := flag.Int("webhook-port", 9443, "Port the webhook server listens on.")
	webhookCertDir := flag.String("webhook-cert-dir", "", "Directory holding tls.crt and tls.key for the webhook server.")
	metricsAddress := flag.String("metrics-bind-address", "0", "Address for hosting metrics; 0 disables them.")
	healthAddr := flag.String("health-addr", "", "Address for /healthz and /readyz; empty disables them.")
	printConfigurations := flag.Bool("print-configurations", false, "Print the webhook configurations machine-api-operator installs (JSON) and exit.")

	// The feature gates cmd/machineset registers; the validators consult them.
	gate := feature.DefaultMutableFeatureGate
	gateOpts, err := features.NewFeatureGateOptions(gate, apifeatures.SelfManaged,
		apifeatures.FeatureGateMachineAPIMigration, apifeatures.FeatureGateVSphereHostVMGroupZonal,
		apifeatures.FeatureGateVSphereMultiDisk)
	if err != nil {
		klog.Fatalf("Error setting up feature gates: %v", err)
	}
	gateOpts.AddFlagsToGoFlagSet(nil)
	flag.Parse()

	if *printConfigurations {
		configurations := []any{
			mapiwebhooks.NewMachineValidatingWebhookConfiguration(),
			mapiwebhooks.NewMachineMutatingWebhookConfiguration(),
		}
		if err := json.NewEncoder(os.Stdout).Encode(configurations); err != nil {
			klog.Fatal(err)
		}
		return
	}

	mgr, err := manager.New(config.GetConfigOrDie(), manager.Options{
		Metrics:                server.Options{BindAddress: *metricsAddress},
		HealthProbeBindAddress: *healthAddr,
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{*watchNamespace: {}}},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    *webhookHost,
			Port:    *webhookPort,
			CertDir: *webhookCertDir,
		}),
	})
	if err != nil {
		klog.Fatal(err)
	}

	klog.Infof("Initializing feature gates: %s", strings.Join(gate.KnownFeatures(), ", "))
	warnings, err := gateOpts.ApplyTo(gate)
	if err != nil {
		klog.Fatalf("Error setting feature gates from flags: %v", err)
	}
	if len(warnings) > 0 {
		klog.Infof("Warnings setting feature gates from flags: %v", warnings)
	}

	// As cmd/machineset: each constructor reads the Infrastructure (and the validators the
	// DNS) object `cluster` once, here.
	machineDefaulter, err := mapiwebhooks.NewMachineDefaulter()
	if err != nil {
		klog.Fatal(err)
	}
	machineValidator, err := mapiwebhooks.NewMachineValidator(mgr.GetClient(), gate)
	if err != nil {
		klog.Fatal(err)
	}
	machineSetDefaulter, err := mapiwebhooks.NewMachineSetDefaulter()
	if err != nil {
		klog.Fatal(err)
	}
	machineSetValidator, err := mapiwebhooks.NewMachineSetValidator(mgr.GetClient(), gate)
	if err != nil {
		klog.Fatal(err)
	}
	hooks := mgr.GetWebhookServer()
	hooks.Register(mapiwebhooks.DefaultMachineMutatingHookPath, &webhook.Admission{Handler: machineDefaulter})
	hooks.Register(mapiwebhooks.DefaultMachineValidatingHookPath, &webhook.Admission{Handler: machineValidator})
	hooks.Register(mapiwebhooks.DefaultMachineSetMutatingHookPath, &webhook.Admission{Handler: machineSetDefaulter})
	hooks.Register(mapiwebhooks.DefaultMachineSetValidatingHookPath, &webhook.Admission{Handler: machineSetValidator})

	if err := mgr.AddReadyzCheck("webhook", hooks.StartedChecker()); err != nil {
		klog.Fatal(err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		klog.Fatal(err)
	}

	klog.Info("Starting the machine-api webhook server.")
	if err := mgr.Start(signals.SetupSignalHandler()); err != nil {
		klog.Fatal(err)
	}
}
