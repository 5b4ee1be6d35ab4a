//! The perimeter and host layers of the node agent: what they mean and what they compile
//! to.
//!
//! What it does:
//! - [`sg`]: security groups with OpenStack Neutron's rule schema and semantics
//!   (`SecurityGroup`, `Port` and `AddressGroup` of `rampart.dev/v1alpha1`), and the
//!   import of the JSON that `openstack security group show -f json`, `openstack port
//!   show -f json` and `openstack address group show -f json` print;
//! - [`talos`]: the host firewall from Talos Linux's `NetworkDefaultActionConfig` and
//!   `NetworkRuleConfig` documents, with Talos's exact semantics;
//! - [`load`]: reads sources once and splits them into the cluster and policy kinds
//!   (`rampart-resources`) and the firewall kinds, with every error located.
//!
//! Both layers compile to `rampart-ruleset` tables (`rampart-sg`, `rampart-host`).
//!
//! What it does not do: no I/O beyond reading the sources it is given, no enforcement
//! (see `rampart-dataplane`).

pub mod explain;
pub mod load;
pub mod sg;
pub mod talos;
mod value;

pub use load::{Inputs, decode_inputs, load_inputs};
