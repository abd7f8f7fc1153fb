//! Compile-time check (issue 22): every public future of the five handles and of the facade
//! is `Send`, and `'static` once it owns its handle, so an embedder can `tokio::spawn` it on a
//! multi-threaded runtime. This file only has to compile; the test body never runs the futures.
//! Written with values of the right types, not `todo!()`: code after a diverging expression is
//! not checked for `Send`, which hid that `ImageMirror::plan` and `resolve` (and so
//! `Kfsec::plan` and `export_manifests`) were not Send (rust-lang/rust#100013).

#![allow(
    unreachable_code,
    unused_variables,
    unused_assignments,
    clippy::diverging_sub_expression
)]

use std::future::Future;

use kfsec_core::Connection;

/// A value of any type, for naming futures' types; never called.
fn any<T>() -> T {
    unreachable!("only the futures' types are checked")
}

/// What `tokio::spawn` asks of a future.
fn spawnable<F: Future + Send + 'static>(_: F) {}

#[test]
fn every_public_future_can_be_spawned() {
    // Never polled: `spawnable` only names the futures' types.
    if std::hint::black_box(true) {
        return;
    }
    let conn: Connection = any();
    spawnable(async move {
        let h = kfsec::vpcsc::Vpcsc::new(&conn).await?;
        let spec: kfsec::vpcsc::Spec = any();
        let plan = h.plan(&spec).await?;
        h.observe(&spec).await?;
        h.apply(&plan).await?;
        h.verify(&spec).await?;
        h.destroy_plan(&spec).await?;
        h.destroy(&spec).await?;
        h.edit_perimeter("p", "n", any()).await?;
        Ok::<_, kfsec::vpcsc::VpcscError>(())
    });
    let conn: Connection = any();
    spawnable(async move {
        let h = kfsec::privatedns::PrivateDns::new(&conn).await?;
        let spec: kfsec::privatedns::Spec = any();
        let plan = h.plan(&spec).await?;
        h.observe(&spec).await?;
        h.apply(&plan).await?;
        h.verify(&spec).await?;
        h.destroy_plan(&spec).await?;
        h.destroy(&spec).await?;
        Ok::<_, kfsec::privatedns::DnsError>(())
    });
    let conn: Connection = any();
    spawnable(async move {
        let h = kfsec::gkeprivate::GkePrivate::new(&conn).await?;
        let spec: kfsec::gkeprivate::Spec = any();
        let plan = h.plan(&spec).await?;
        h.observe(&spec).await?;
        h.apply(&plan).await?;
        h.apply_network(&plan).await?;
        h.apply_cluster(&plan).await?;
        h.verify(&spec).await?;
        h.cluster(&spec).await?;
        h.destroy_plan(&spec).await?;
        h.destroy(&spec).await?;
        Ok::<_, kfsec::gkeprivate::GkeError>(())
    });
    let conn: Connection = any();
    spawnable(async move {
        let spec: kfsec::imagemirror::Spec = any();
        let h = kfsec::imagemirror::ImageMirror::new(&conn)?;
        let plan = h.plan(&spec).await?;
        h.apply(&plan).await?;
        let wanted = any();
        h.plan_wanted(&spec, &wanted).await;
        h.mirror(&spec, &wanted).await?;
        h.resolve(&spec, &wanted).await;
        h.verify(&spec).await?;
        h.destroy(&spec).await?;
        Ok::<_, kfsec::imagemirror::MirrorError>(())
    });
    let conn: Connection = any();
    spawnable(async move {
        let h = kfsec::iapingress::IapIngress::new(&conn).await?;
        let spec: kfsec::iapingress::Spec = any();
        let plan = h.plan(&spec).await?;
        h.apply(&plan).await?;
        h.verify(&spec).await?;
        h.wait_ready(&spec, std::time::Duration::ZERO).await?;
        h.access_resource(&spec).await?;
        h.destroy_plan(&spec).await?;
        h.destroy(&spec).await?;
        Ok::<_, kfsec::iapingress::IngressError>(())
    });
    let conn: Connection = any();
    spawnable(async move {
        let k = kfsec::Kfsec::new(&conn);
        let config: kfsec::Config = any();
        k.plan(&config).await?;
        k.preflight(&config).await?;
        k.apply(&config, kfsec::ApplyOptions::default()).await?;
        k.verify(&config).await?;
        k.export_gcloud(&config).await?;
        k.export_manifests(&config).await?;
        k.destroy_plan(&config).await?;
        k.destroy(&config, kfsec::DestroyOptions::default()).await?;
        k.kube(&config).await.ok();
        Ok::<_, kfsec::WorkflowError>(())
    });
}
