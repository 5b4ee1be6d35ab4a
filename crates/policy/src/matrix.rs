//! Reachability matrices between every pair of addressed pods, and their output formats.
//!
//! JSON (`-o json`) is exactly
//! `{"probes":[{"port":80,"protocol":"TCP","allowed":{"<ns>/<pod>":{"<ns>/<pod>":true,...},...}}]}`
//! with every pod as a key on both levels, sources outside, destinations inside. The
//! table (`-o table`) prints one grid per probe.

use std::collections::BTreeSet;
use std::io::{self, Write};

use rampart_model::{Cluster, Probe};

use crate::index::{Index, PodMatrix};

/// Every (port, protocol) some pod declares, sorted by port then protocol.
pub fn declared_probes(cluster: &Cluster) -> Vec<Probe> {
    let set: BTreeSet<Probe> = cluster
        .pods
        .iter()
        .flat_map(|p| {
            p.ports.iter().map(|c| Probe {
                port: c.port,
                protocol: c.protocol,
            })
        })
        .collect();
    set.into_iter().collect()
}

/// The matrix of every addressed pod to every addressed pod, one per probe.
pub fn compute(index: &Index, probes: &[Probe]) -> Vec<PodMatrix> {
    let pods = index.addressed_pods();
    probes
        .iter()
        .map(|probe| {
            let classes = index.class_matrix(*probe);
            index.pod_matrix(&classes, &pods)
        })
        .collect()
}

/// Writes the matrices as JSON.
pub fn write_json(out: &mut dyn Write, index: &Index, matrices: &[PodMatrix]) -> io::Result<()> {
    out.write_all(b"{\"probes\":[")?;
    for (m, matrix) in matrices.iter().enumerate() {
        if m > 0 {
            out.write_all(b",")?;
        }
        let probe = matrix.probe();
        write!(
            out,
            "{{\"port\":{},\"protocol\":\"{}\",\"allowed\":{{",
            probe.port, probe.protocol
        )?;
        let names: Vec<String> = matrix
            .pods()
            .iter()
            .map(|p| serde_json::to_string(index.pod_name(*p)).unwrap_or_default())
            .collect();
        for (i, src) in names.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write!(out, "{src}:{{")?;
            for (j, dst) in names.iter().enumerate() {
                if j > 0 {
                    out.write_all(b",")?;
                }
                write!(out, "{dst}:{}", matrix.allowed(i, j))?;
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"}}")?;
    }
    out.write_all(b"]}\n")
}

/// Writes the matrices as readable grids: `.` allowed, `X` denied, rows are sources.
pub fn write_table(out: &mut dyn Write, index: &Index, matrices: &[PodMatrix]) -> io::Result<()> {
    for (m, matrix) in matrices.iter().enumerate() {
        if m > 0 {
            writeln!(out)?;
        }
        let probe = matrix.probe();
        let names: Vec<&str> = matrix.pods().iter().map(|p| index.pod_name(*p)).collect();
        let n = names.len();
        let allowed = matrix.allowed_pairs();
        writeln!(
            out,
            "{probe}: {allowed} of {} pairs allowed (rows: from, columns: to; . allowed, X denied)",
            n * n
        )?;
        let width = names.iter().map(|s| s.len()).max().unwrap_or(0);
        // Column headers: numbers, with a legend below the grid.
        write!(out, "{:width$}", "")?;
        for j in 0..n {
            write!(out, " {:>3}", j + 1)?;
        }
        writeln!(out)?;
        for (i, name) in names.iter().enumerate() {
            write!(out, "{name:width$}")?;
            for j in 0..n {
                write!(out, " {:>3}", if matrix.allowed(i, j) { "." } else { "X" })?;
            }
            writeln!(out, "  {:>3}", i + 1)?;
        }
    }
    Ok(())
}
