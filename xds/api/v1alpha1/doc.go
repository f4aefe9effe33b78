// Package outriggerv1alpha1 holds Outrigger's own xDS payloads, generated
// from outrigger.proto: the binding of a building-block route to its
// component, and Dapr's retry and circuit-breaker policies, which Envoy's
// types cannot say exactly.
package outriggerv1alpha1
