//! Rampart's domain model: the validated types every layer reasons about.
//!
//! What it holds: IP prefixes and sets of them, port ranges and protocols, labels and
//! label selectors, the workloads of a cluster (namespaces, pods, nodes), network
//! policies of every tier (NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)
//! in a form that cannot be invalid, and flows with their verdicts.
//!
//! What it does not do: no parsing of documents (see `rampart-resources`), no policy
//! evaluation (see `rampart-policy`), no I/O, no clock.
