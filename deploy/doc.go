// Package deploy holds no code: its tests check what an operator deploys
// with, the files beside it and the repository's Dockerfile. The
// Kubernetes manifests of deploy/kubernetes are decoded strictly into the
// Kubernetes API types (an unknown or misspelt field, or a value of the
// wrong type, fails), then checked against each other and against the
// server (probe paths, ports, the drain's timing, the environment variables
// cmd/switchboard reads); deploy/compose is checked the same way, as far as
// it can be without a container engine. The Kubernetes modules are imported
// by these tests only, never by the server.
package deploy
