package deploy

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The names the manifests give the server's objects.
const (
	appName    = "switchboard" // the Deployment, Service, PDB, HPA, ConfigMap and Secret
	workerName = "switchboard-worker"
	container  = "switchboard" // the server's container in the Deployment
	imageName  = "switchboard" // the image name kustomize's `images` replaces
)

// TestDecoderIsStrict shows that the decoder the other tests use refuses
// what the API server's strict validation refuses, so that a manifest that
// decodes has no misspelt or mistyped field.
func TestDecoderIsStrict(t *testing.T) {
	t.Parallel()

	const good = `apiVersion: v1
kind: Service
metadata:
  name: s
spec:
  selector:
    app: s
  ports:
    - port: 80
      targetPort: http
`
	_, err := decodeStrict([]byte(good))
	require.NoError(t, err)

	tests := []struct {
		name, old, new string
	}{
		{"UnknownField", "  selector:", "  selectr:"},
		{"FieldInTheWrongCase", "  selector:", "  Selector:"},
		{"WrongType", "port: 80", "port: eighty"},
		{"DuplicateField", "  selector:\n    app: s\n", "  selector:\n    app: s\n  selector:\n    app: t\n"},
		{"UnknownKind", "kind: Service", "kind: Servise"},
		{"UnknownVersion", "apiVersion: v1", "apiVersion: v2"},
		{"NotYAML", "  ports:", "\tports:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bad := strings.Replace(good, tt.old, tt.new, 1)
			require.NotEqual(t, good, bad)
			_, err := decodeStrict([]byte(bad))
			require.Error(t, err)
		})
	}
}

// testBundle is what the manifest tests check: the decoded tree and the
// server's settings read from its source.
type testBundle struct {
	tree   *tree
	server *server
	// uid is the image's user, from the Dockerfile.
	uid int64
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{tree: readTree(t), server: readServer(t), uid: readDockerfile(t).uid}
}

// TestKubernetes checks the manifests against each other and against the
// server.
func TestKubernetes(t *testing.T) {
	t.Parallel()

	t.Run("Kinds", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		kinds := map[string]int{}
		for _, m := range b.tree.objects {
			kinds[fmt.Sprintf("%T", m.obj)]++
		}
		for _, want := range []runtime.Object{
			&corev1.Namespace{}, &corev1.ConfigMap{}, &corev1.Secret{}, &appsv1.Deployment{},
			&corev1.Service{}, &policyv1.PodDisruptionBudget{}, &autoscalingv2.HorizontalPodAutoscaler{}, &batchv1.Job{},
		} {
			require.Positive(t, kinds[fmt.Sprintf("%T", want)], "no %T in deploy/kubernetes", want)
		}
	})

	t.Run("Namespace", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		nss := all[*corev1.Namespace](b.tree)
		require.Len(t, nss, 1)
		ns := nss[0]
		require.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"],
			"the pods are meant to pass the restricted Pod Security profile")
		for _, m := range b.tree.objects {
			if _, ok := m.obj.(*corev1.Namespace); ok {
				continue
			}
			obj, ok := m.obj.(metav1.Object)
			require.True(t, ok, m.file)
			// Explicit, so that the files also work with kubectl create -f.
			require.Equal(t, ns.Name, obj.GetNamespace(), "%s: %s is not in the namespace %s", m.file, obj.GetName(), ns.Name)
		}
		for _, m := range b.tree.patches {
			obj := m.obj.(metav1.Object)
			require.Equal(t, ns.Name, obj.GetNamespace(), "patch %s: a namespace other than the target's matches nothing", m.file)
		}
	})

	t.Run("Kustomizations", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		main := b.tree.kustomizations["."]
		require.NotNil(t, main, "no deploy/kubernetes/kustomization.yaml")
		require.Equal(t, "Kustomization", main.Kind)
		// Every image of every pod is the name the kustomizations replace,
		// and every kustomization that makes pods replaces it the same way.
		var images []kustomizeImage
		for dir, k := range b.tree.kustomizations {
			if k.Kind == "Component" {
				// A component is optional: the main kustomization offers it
				// in a comment, and it brings no image of its own.
				require.Regexp(t, `(?m)^#\s+- `+regexp.QuoteMeta(dir)+`$`, string(main.text),
					"kustomization.yaml does not mention the component %s", dir)
				require.Empty(t, k.Images, "%s: the component takes the image of the kustomization that uses it", dir)
				continue
			}
			require.Len(t, k.Images, 1, "%s/kustomization.yaml: the image of the switchboard containers", dir)
			require.Equal(t, imageName, k.Images[0].Name, dir)
			require.NotEmpty(t, k.Images[0].NewName, dir)
			require.NotEmpty(t, k.Images[0].NewTag, dir)
			images = append(images, k.Images[0])
		}
		for _, img := range images {
			require.Equal(t, images[0], img, "the kustomizations name different images")
		}
		for owner, tmpl := range podTemplates(b.tree) {
			for _, c := range tmpl.Spec.Containers {
				require.Equal(t, imageName, c.Image, "%s: container %s", owner, c.Name)
			}
		}
	})

	t.Run("Deployment", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		d := one[*appsv1.Deployment](t, b.tree, appName)
		requireSelects(t, "Deployment "+d.Name, d.Spec.Selector, d.Spec.Template.Labels)
		require.Nil(t, d.Spec.Replicas, "the HPA owns the replica count: a replicas field would be reset by every kubectl apply")
		require.NotNil(t, d.Spec.Strategy.RollingUpdate)
		require.Equal(t, intstr.FromInt32(0), *d.Spec.Strategy.RollingUpdate.MaxUnavailable,
			"a rollout starts a new pod before it stops an old one")

		c := containerNamed(t, d.Spec.Template.Spec, container)
		require.Equal(t, "serve", c.Args[0])
		b.server.argFlags(t, "Deployment "+d.Name, c.Args)

		// The port is the one the server listens on.
		cm := one[*corev1.ConfigMap](t, b.tree, appName)
		addr := cmp.Or(cm.Data["SWITCHBOARD_ADDR"], b.server.addr)
		port := portOf(t, addr)
		http := portNamed(t, c, "http")
		require.Equal(t, port, http.ContainerPort, "containerPort against SWITCHBOARD_ADDR %q", addr)

		// Probes: the server's endpoints, on its port.
		probes := []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"readiness", c.ReadinessProbe, "/readyz"},
			{"liveness", c.LivenessProbe, "/healthz"},
			{"startup", c.StartupProbe, "/healthz"},
		}
		for _, p := range probes {
			require.NotNil(t, p.probe, "no %s probe", p.name)
			require.NotNil(t, p.probe.HTTPGet, "%s probe: the image has no shell, so only HTTP probes work", p.name)
			require.Equal(t, p.path, p.probe.HTTPGet.Path, "%s probe", p.name)
			require.True(t, b.server.routes["GET "+p.path], "%s probe: the web package serves no GET %s", p.name, p.path)
			require.Equal(t, port, resolvePort(t, c, p.probe.HTTPGet.Port), "%s probe's port", p.name)
		}

		// The drain: preStop, then SIGTERM with --shutdown-timeout, all
		// before the grace period ends.
		require.NotNil(t, c.Lifecycle)
		require.NotNil(t, c.Lifecycle.PreStop)
		require.NotNil(t, c.Lifecycle.PreStop.Sleep, "preStop: the sleep action (the image has no sleep binary)")
		preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		require.GreaterOrEqual(t, preStop, 3*time.Second, "preStop must give the load balancers time to stop sending")
		shutdown := b.server.shutdownOf(t, "Deployment "+d.Name, c.Args)
		require.NotNil(t, d.Spec.Template.Spec.TerminationGracePeriodSeconds)
		grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
		require.Greater(t, grace, preStop+shutdown,
			"terminationGracePeriodSeconds (%v) must exceed preStop (%v) + --shutdown-timeout (%v), or SIGKILL cuts the 1001 closes", grace, preStop, shutdown)

		// Prometheus' annotations point at /metrics on the port.
		ann := d.Spec.Template.Annotations
		require.Equal(t, strconv.Itoa(int(port)), ann["prometheus.io/port"])
		require.True(t, b.server.routes["GET "+ann["prometheus.io/path"]], "no route GET %s", ann["prometheus.io/path"])

		// Spread over nodes.
		var spread bool
		for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
			if tsc.TopologyKey == "kubernetes.io/hostname" {
				spread = true
				requireSelects(t, "topologySpreadConstraints", tsc.LabelSelector, d.Spec.Template.Labels)
			}
		}
		require.True(t, spread, "no topology spread over kubernetes.io/hostname")
	})

	t.Run("PodSecurity", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		templates := podTemplates(b.tree)
		require.NotEmpty(t, templates)
		for owner, tmpl := range templates {
			spec := tmpl.Spec
			sc := spec.SecurityContext
			require.NotNil(t, sc, owner)
			require.True(t, deref(sc.RunAsNonRoot), "%s: runAsNonRoot", owner)
			require.Equal(t, b.uid, deref(sc.RunAsUser), "%s: runAsUser is the Dockerfile's USER", owner)
			require.NotNil(t, sc.SeccompProfile, "%s: seccompProfile", owner)
			require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type, owner)
			require.NotNil(t, spec.AutomountServiceAccountToken, owner)
			require.False(t, *spec.AutomountServiceAccountToken, "%s: the server uses no Kubernetes API", owner)
			require.NotNil(t, spec.EnableServiceLinks, owner)
			require.False(t, *spec.EnableServiceLinks, "%s: service links would add SWITCHBOARD_* and REDIS_* variables", owner)
			require.Empty(t, spec.InitContainers, owner)
			for _, c := range spec.Containers {
				where := owner + ", container " + c.Name
				csc := c.SecurityContext
				require.NotNil(t, csc, where)
				require.NotNil(t, csc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation: false", where)
				require.False(t, *csc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation: false", where)
				require.True(t, deref(csc.ReadOnlyRootFilesystem), "%s: readOnlyRootFilesystem", where)
				require.False(t, deref(csc.Privileged), where)
				require.NotNil(t, csc.Capabilities, where)
				require.Equal(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop, "%s: drop all capabilities", where)
				require.Empty(t, csc.Capabilities.Add, where)
				if csc.RunAsUser != nil {
					require.NotZero(t, *csc.RunAsUser, where)
				}
				requireResources(t, where, c)
			}
		}
	})

	t.Run("Environment", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		cm := one[*corev1.ConfigMap](t, b.tree, appName)
		secret := one[*corev1.Secret](t, b.tree, appName)
		secretKeys := map[string]bool{}
		for k := range secret.StringData {
			secretKeys[k] = true
		}
		for k := range secret.Data {
			secretKeys[k] = true
		}
		for k, v := range cm.Data {
			require.True(t, b.server.knownEnv(k), "ConfigMap: the server reads no %s", k)
			require.False(t, secretEnv[k], "ConfigMap: %s is a secret; it belongs in the Secret", k)
			require.False(t, secretKeys[k], "%s is in both the ConfigMap and the Secret: which wins depends on envFrom's order", k)
			b.server.checkEnvValue(t, "ConfigMap", k, v)
		}
		for k := range secretKeys {
			require.True(t, b.server.knownEnv(k), "Secret: the server reads no %s", k)
		}
		for k, v := range secret.StringData {
			b.server.checkEnvValue(t, "Secret", k, v)
		}
		for _, k := range []string{"SWITCHBOARD_JWT_SECRET", "DATABASE_URL"} {
			require.True(t, secretKeys[k], "the Secret has no %s", k)
		}
		// Commented-out settings are ones the server reads or is about to.
		for _, file := range []string{"configmap.yaml", "secret.example.yaml"} {
			for _, k := range commentedKeys(b.tree.raw[file]) {
				require.True(t, b.server.knownEnv(k) || comingEnv[k], "%s: the commented %s is no setting of the server", file, k)
				if comingEnv[k] && !b.server.env[k] {
					t.Logf("%s: %s is shown commented; cmd/switchboard does not read it yet", file, k)
				}
			}
		}

		// What every container gets: envFrom the two, env by name.
		for owner, tmpl := range podTemplates(b.tree) {
			for _, c := range tmpl.Spec.Containers {
				where := owner + ", container " + c.Name
				for _, ef := range c.EnvFrom {
					require.Empty(t, ef.Prefix, where)
					switch {
					case ef.ConfigMapRef != nil:
						require.Equal(t, cm.Name, ef.ConfigMapRef.Name, where)
					case ef.SecretRef != nil:
						require.Equal(t, secret.Name, ef.SecretRef.Name, where)
					default:
						t.Fatalf("%s: envFrom names neither a ConfigMap nor a Secret", where)
					}
				}
				for _, e := range c.Env {
					require.True(t, b.server.knownEnv(e.Name), "%s: the server reads no %s", where, e.Name)
					require.False(t, secretEnv[e.Name] && e.Value != "", "%s: %s is a secret: take it from the Secret", where, e.Name)
					switch {
					case e.ValueFrom == nil:
						b.server.checkEnvValue(t, where, e.Name, e.Value)
					case e.ValueFrom.SecretKeyRef != nil:
						require.Equal(t, secret.Name, e.ValueFrom.SecretKeyRef.Name, where)
						require.True(t, secretKeys[e.ValueFrom.SecretKeyRef.Key], "%s: the Secret has no %s", where, e.ValueFrom.SecretKeyRef.Key)
					case e.ValueFrom.ConfigMapKeyRef != nil:
						require.Equal(t, cm.Name, e.ValueFrom.ConfigMapKeyRef.Name, where)
						require.Contains(t, cm.Data, e.ValueFrom.ConfigMapKeyRef.Key, where)
					}
					if e.Name == "GOMEMLIMIT" {
						limit := c.Resources.Limits[corev1.ResourceMemory]
						goLimit, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
						require.NoError(t, err, "%s: GOMEMLIMIT %q", where, e.Value)
						require.Negative(t, goLimit.Cmp(limit), "%s: GOMEMLIMIT %s must stay under the memory limit %s", where, e.Value, limit.String())
					}
				}
			}
		}
	})

	t.Run("Service", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		svc := one[*corev1.Service](t, b.tree, appName)
		d := one[*appsv1.Deployment](t, b.tree, appName)
		require.Contains(t, []corev1.ServiceAffinity{"", corev1.ServiceAffinityNone}, svc.Spec.SessionAffinity,
			"any node resumes any client: no session affinity")
		requireSelects(t, "Service", metav1.SetAsLabelSelector(svc.Spec.Selector), d.Spec.Template.Labels)
		requireSelectsNoOther(t, b.tree, "Service", metav1.SetAsLabelSelector(svc.Spec.Selector), d)
		c := containerNamed(t, d.Spec.Template.Spec, container)
		require.NotEmpty(t, svc.Spec.Ports)
		for _, p := range svc.Spec.Ports {
			require.Equal(t, portNamed(t, c, "http").ContainerPort, resolvePort(t, c, p.TargetPort), "Service port %s", p.Name)
		}
	})

	t.Run("PodDisruptionBudget", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		d := one[*appsv1.Deployment](t, b.tree, appName)
		hpa := one[*autoscalingv2.HorizontalPodAutoscaler](t, b.tree, appName)
		pdb := one[*policyv1.PodDisruptionBudget](t, b.tree, appName)
		requireSelects(t, "PodDisruptionBudget", pdb.Spec.Selector, d.Spec.Template.Labels)
		requireSelectsNoOther(t, b.tree, "PodDisruptionBudget", pdb.Spec.Selector, d)
		require.NotNil(t, pdb.Spec.MaxUnavailable, "maxUnavailable, which keeps working as the autoscaler changes the count")
		require.Nil(t, pdb.Spec.MinAvailable)
		require.Equal(t, intstr.FromInt32(1), *pdb.Spec.MaxUnavailable)
		require.Greater(t, deref(hpa.Spec.MinReplicas), int32(1)+1, "at least two nodes serve while one is disrupted")
	})

	t.Run("HorizontalPodAutoscaler", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		d := one[*appsv1.Deployment](t, b.tree, appName)
		hpa := one[*autoscalingv2.HorizontalPodAutoscaler](t, b.tree, appName)
		ref := hpa.Spec.ScaleTargetRef
		require.Equal(t, autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name}, ref)
		require.GreaterOrEqual(t, deref(hpa.Spec.MinReplicas), int32(3), "three nodes at least")
		require.Greater(t, hpa.Spec.MaxReplicas, deref(hpa.Spec.MinReplicas))
		requireCPUTarget(t, "hpa.yaml", hpa.Spec.Metrics)
		c := containerNamed(t, d.Spec.Template.Spec, container)
		require.False(t, c.Resources.Requests.Cpu().IsZero(), "a CPU utilization target needs a CPU request")

		// The component autoscale-connections replaces metrics whole.
		patch := b.tree.patches["autoscale-connections/hpa.yaml"]
		require.NotNil(t, patch.obj, "no autoscale-connections/hpa.yaml patch")
		ph := patch.obj.(*autoscalingv2.HorizontalPodAutoscaler)
		require.Equal(t, hpa.Name, ph.Name)
		for _, m := range hpa.Spec.Metrics {
			require.Contains(t, ph.Spec.Metrics, m, "the patch replaces the metrics list: it must repeat hpa.yaml's")
		}
		var pods int
		for _, m := range ph.Spec.Metrics {
			if m.Type != autoscalingv2.PodsMetricSourceType {
				continue
			}
			pods++
			require.True(t, b.server.metrics[m.Pods.Metric.Name], "the server exports no metric %s", m.Pods.Metric.Name)
			require.Equal(t, autoscalingv2.AverageValueMetricType, m.Pods.Target.Type)
		}
		require.Equal(t, 1, pods, "the connections metric")
	})

	t.Run("Worker", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		d := one[*appsv1.Deployment](t, b.tree, appName)
		w := one[*appsv1.Deployment](t, b.tree, workerName)
		requireSelects(t, "Deployment "+w.Name, w.Spec.Selector, w.Spec.Template.Labels)
		require.False(t, labelSelector(t, d.Spec.Selector).Matches(labels.Set(w.Spec.Template.Labels)),
			"the server's selector takes the worker's pods")
		require.Len(t, w.Spec.Template.Spec.Containers, 1)
		c := w.Spec.Template.Spec.Containers[0]
		require.Equal(t, []string{"worker"}, c.Args[:1])
		b.server.argFlags(t, "Deployment "+w.Name, c.Args)
		require.Empty(t, c.Ports, "the worker listens on nothing")
		pdb := one[*policyv1.PodDisruptionBudget](t, b.tree, workerName)
		requireSelects(t, "PodDisruptionBudget "+pdb.Name, pdb.Spec.Selector, w.Spec.Template.Labels)
		requireSelectsNoOther(t, b.tree, "PodDisruptionBudget "+pdb.Name, pdb.Spec.Selector, w)

		// With the worker, serve gets --no-workers and keeps its other args.
		patch := b.tree.patches["worker/serve-no-workers.yaml"]
		require.NotNil(t, patch.obj, "no worker/serve-no-workers.yaml patch")
		pd := patch.obj.(*appsv1.Deployment)
		require.Equal(t, d.Name, pd.Name)
		pc := containerNamed(t, pd.Spec.Template.Spec, container)
		base := containerNamed(t, d.Spec.Template.Spec, container)
		require.Equal(t, append(slices.Clone(base.Args), "--no-workers"), pc.Args,
			"the patch replaces args whole: it must be deployment.yaml's plus --no-workers")
		b.server.argFlags(t, "worker/serve-no-workers.yaml", pc.Args)
	})

	t.Run("MigrateJob", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		jobs := all[*batchv1.Job](b.tree)
		require.Len(t, jobs, 1)
		j := jobs[0]
		require.Contains(t, []corev1.RestartPolicy{corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure}, j.Spec.Template.Spec.RestartPolicy)
		require.Len(t, j.Spec.Template.Spec.Containers, 1)
		c := j.Spec.Template.Spec.Containers[0]
		require.Equal(t, []string{"migrate", "up"}, c.Args)
		require.NotNil(t, j.Spec.BackoffLimit)
		require.NotNil(t, j.Spec.TTLSecondsAfterFinished, "a finished Job is removed")
		d := one[*appsv1.Deployment](t, b.tree, appName)
		require.False(t, labelSelector(t, d.Spec.Selector).Matches(labels.Set(j.Spec.Template.Labels)),
			"the server's selector takes the Job's pod")
	})
}

// requireSelects fails unless sel selects a pod with these labels.
func requireSelects(t *testing.T, who string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	require.NotNil(t, sel, "%s: no selector", who)
	require.True(t, labelSelector(t, sel).Matches(labels.Set(podLabels)), "%s: selector %v does not select the pods %v", who, sel, podLabels)
}

// requireSelectsNoOther fails if sel selects the pods of a workload other
// than owner.
func requireSelectsNoOther(t *testing.T, tr *tree, who string, sel *metav1.LabelSelector, owner *appsv1.Deployment) {
	t.Helper()
	s := labelSelector(t, sel)
	for name, tmpl := range podTemplates(tr) {
		if name == "Deployment "+owner.Name {
			continue
		}
		require.False(t, s.Matches(labels.Set(tmpl.Labels)), "%s also selects the pods of %s", who, name)
	}
}

func labelSelector(t *testing.T, sel *metav1.LabelSelector) labels.Selector {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	require.NoError(t, err)
	require.False(t, s.Empty(), "an empty selector selects everything")
	return s
}

func containerNamed(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func portNamed(t *testing.T, c corev1.Container, name string) corev1.ContainerPort {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return corev1.ContainerPort{}
}

// resolvePort is the container port a probe or a Service's targetPort
// names, by number or by name.
func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.String {
		return portNamed(t, c, p.StrVal).ContainerPort
	}
	for _, cp := range c.Ports {
		if cp.ContainerPort == p.IntVal {
			return p.IntVal
		}
	}
	t.Fatalf("container %s has no port %d", c.Name, p.IntVal)
	return 0
}

// requireResources fails unless c requests CPU and memory and limits its
// memory.
func requireResources(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	r := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok := r.Requests[name]
		require.True(t, ok, "%s: no %s request", where, name)
		lim, ok := r.Limits[name]
		require.True(t, ok, "%s: no %s limit", where, name)
		require.LessOrEqual(t, req.Cmp(lim), 0, "%s: %s request above its limit", where, name)
	}
}

func requireCPUTarget(t *testing.T, where string, metrics []autoscalingv2.MetricSpec) {
	t.Helper()
	for _, m := range metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource.Name == corev1.ResourceCPU {
			require.Equal(t, autoscalingv2.UtilizationMetricType, m.Resource.Target.Type, where)
			u := deref(m.Resource.Target.AverageUtilization)
			require.True(t, u > 0 && u <= 100, "%s: CPU target %d%%", where, u)
			return
		}
	}
	t.Fatalf("%s: no CPU target", where)
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
