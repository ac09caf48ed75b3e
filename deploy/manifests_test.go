package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kubernetesDir holds the manifests.
var kubernetesDir = filepath.Join(root, "deploy", "kubernetes")

// scheme maps each kind and apiVersion the manifests may use to its Go
// type. A kind not registered here fails the decoding: add its group when
// a manifest needs one.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, batchv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// decoder decodes YAML or JSON into the registered types the way the API
// server's strict field validation does: an unknown field (a typo), a field
// in the wrong case, a duplicate field or a value of the wrong type is an
// error. It neither defaults nor converts, so what a test sees is what the
// file says.
var decoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeStrict decodes one document.
func decodeStrict(doc []byte) (runtime.Object, error) {
	obj, _, err := decoder.Decode(doc, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// manifest is one decoded Kubernetes object and the file it came from.
type manifest struct {
	file string // relative to deploy/kubernetes
	obj  runtime.Object
}

func (m manifest) name() string {
	a, err := meta.Accessor(m.obj)
	if err != nil {
		return ""
	}
	return a.GetName()
}

// kustomization is the part of kustomize's Kustomization and Component
// that these files use, decoded strictly so that a misspelt field fails
// (kustomize itself is not a dependency).
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources,omitempty"`
	Components []string `json:"components,omitempty"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
	Images []kustomizeImage `json:"images,omitempty"`

	dir  string // relative to deploy/kubernetes
	text []byte // the file, comments included
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

// tree is everything under deploy/kubernetes, decoded.
type tree struct {
	// objects are the resources: what kubectl applies.
	objects []manifest
	// patches are the components' patches, by path (partial objects).
	patches map[string]manifest
	// kustomizations are the kustomization.yaml files, by directory.
	kustomizations map[string]*kustomization
	// raw holds every YAML file's bytes, by path.
	raw map[string][]byte
}

// examples are manifests outside every kustomization, applied by hand.
var examples = []string{"secret.example.yaml"}

// readTree decodes every YAML file under deploy/kubernetes strictly and
// checks that each belongs somewhere: listed by a kustomization, used as a
// patch, or an example.
func readTree(t *testing.T) *tree {
	t.Helper()
	tr := &tree{patches: map[string]manifest{}, kustomizations: map[string]*kustomization{}, raw: map[string][]byte{}}
	err := filepath.WalkDir(kubernetesDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(kubernetesDir, path)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(rel, ".yaml") && !strings.HasSuffix(rel, ".yml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tr.raw[filepath.ToSlash(rel)] = data
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, tr.raw, "no manifests in %s", kubernetesDir)

	// Kustomizations first: they say which files are patches.
	for rel, data := range tr.raw {
		if filepath.Base(rel) != "kustomization.yaml" {
			continue
		}
		k := &kustomization{dir: filepath.ToSlash(filepath.Dir(rel)), text: data}
		require.NoError(t, yaml.UnmarshalStrict(data, k), "%s", rel)
		switch k.Kind {
		case "Kustomization":
			require.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion, rel)
		case "Component":
			require.Equal(t, "kustomize.config.k8s.io/v1alpha1", k.APIVersion, rel)
		default:
			t.Fatalf("%s: kind %q is neither Kustomization nor Component", rel, k.Kind)
		}
		tr.kustomizations[k.dir] = k
	}
	listed := map[string]bool{}
	patches := map[string]bool{}
	for _, k := range tr.kustomizations {
		for _, r := range k.Resources {
			p := joinRel(k.dir, r)
			require.Contains(t, tr.raw, p, "%s/kustomization.yaml lists %s, which is not there", k.dir, r)
			listed[p] = true
		}
		for _, c := range k.Components {
			p := joinRel(k.dir, c)
			require.Contains(t, tr.kustomizations, p, "%s/kustomization.yaml names the component %s, which is not there", k.dir, c)
		}
		for _, patch := range k.Patches {
			p := joinRel(k.dir, patch.Path)
			require.Contains(t, tr.raw, p, "%s/kustomization.yaml patches with %s, which is not there", k.dir, patch.Path)
			patches[p] = true
		}
	}

	for rel, data := range tr.raw {
		if filepath.Base(rel) == "kustomization.yaml" {
			continue
		}
		require.True(t, listed[rel] || patches[rel] || slices.Contains(examples, rel),
			"%s is in no kustomization.yaml (resources or patches) and not an example: kubectl apply -k would leave it out", rel)
		docs, err := splitYAML(data)
		require.NoError(t, err, rel)
		require.NotEmpty(t, docs, "%s holds no document", rel)
		for i, doc := range docs {
			obj, err := decodeStrict(doc)
			require.NoError(t, err, "%s, document %d", rel, i+1)
			m := manifest{file: rel, obj: obj}
			if patches[rel] {
				require.Len(t, docs, 1, "%s: one patch per file", rel)
				tr.patches[rel] = m
				continue
			}
			tr.objects = append(tr.objects, m)
		}
	}
	slices.SortFunc(tr.objects, func(a, b manifest) int { return strings.Compare(a.file, b.file) })
	return tr
}

// joinRel joins a path of a kustomization in dir to dir, both relative to
// deploy/kubernetes.
func joinRel(dir, path string) string {
	return filepath.ToSlash(filepath.Clean(filepath.Join(dir, path)))
}

// splitYAML splits a YAML stream into its documents, leaving out those
// that hold only comments.
func splitYAML(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "" {
			continue
		}
		docs = append(docs, doc)
	}
}

// all returns the objects of type T, with their files.
func all[T runtime.Object](tr *tree) []T {
	var out []T
	for _, m := range tr.objects {
		if o, ok := m.obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

// one returns the object of type T named name.
func one[T runtime.Object](t *testing.T, tr *tree, name string) T {
	t.Helper()
	for _, m := range tr.objects {
		if o, ok := m.obj.(T); ok && m.name() == name {
			return o
		}
	}
	var zero T
	t.Fatalf("no %T named %q in deploy/kubernetes", zero, name)
	return zero
}

// podTemplates are the pod templates of the Deployments and Jobs, by the
// name of their owner.
func podTemplates(tr *tree) map[string]corev1.PodTemplateSpec {
	out := map[string]corev1.PodTemplateSpec{}
	for _, d := range all[*appsv1.Deployment](tr) {
		out["Deployment "+d.Name] = d.Spec.Template
	}
	for _, j := range all[*batchv1.Job](tr) {
		out["Job "+j.Name] = j.Spec.Template
	}
	return out
}
