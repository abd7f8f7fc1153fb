//! The gcloud commands equivalent to each change, runnable as they are.

use kfsec_core::plan::shell_quote as q;

use crate::spec::Spec;

pub(crate) fn create_network(spec: &Spec) -> String {
    format!(
        "gcloud compute networks create {} --project={} --subnet-mode=custom --description={}",
        spec.network.name,
        spec.project,
        q(&crate::desired::network_description(spec))
    )
}

pub(crate) fn create_subnet(spec: &Spec) -> String {
    let s = &spec.network.subnet;
    format!(
        "gcloud compute networks subnets create {} --project={} --network={} --region={} --range={} --secondary-range={}={},{}={} --enable-private-ip-google-access --description={}",
        s.name,
        spec.project,
        spec.network.name,
        spec.region,
        s.range,
        s.pods_range_name(),
        s.pods,
        s.services_range_name(),
        s.services,
        q(&crate::desired::subnet_description(spec))
    )
}

pub(crate) fn enable_private_google_access(spec: &Spec) -> String {
    format!(
        "gcloud compute networks subnets update {} --project={} --region={} --enable-private-ip-google-access",
        spec.network.subnet.name, spec.project, spec.region
    )
}

pub(crate) fn create_route(spec: &Spec) -> String {
    format!(
        "gcloud compute routes create {} --project={} --network={} --destination-range={} --next-hop-gateway=default-internet-gateway --description={}",
        spec.route_name(),
        spec.project,
        spec.network.name,
        spec.network.vip_range,
        q(&kfsec_core::ownership::describe(&format!(
            "Google APIs through the {} VIP",
            spec.network.vip_range
        )))
    )
}

pub(crate) fn firewall(spec: &Spec, verb: &str, name: &str, body: &serde_json::Value) -> String {
    let allow: Vec<String> = body["allowed"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| {
            let proto = a["IPProtocol"].as_str().unwrap_or("tcp").to_string();
            a["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .map(move |p| format!("{proto}:{p}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let direction = body["direction"].as_str().unwrap_or("INGRESS");
    let ranges = |key: &str| {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let range_flag = if direction == "EGRESS" {
        format!("--destination-ranges={}", ranges("destinationRanges"))
    } else {
        format!("--source-ranges={}", ranges("sourceRanges"))
    };
    let network = if verb == "create" {
        format!(" --network={}", spec.network.name)
    } else {
        String::new()
    };
    let direction_flag = if verb == "create" {
        format!(" --direction={direction}")
    } else {
        String::new()
    };
    format!(
        "gcloud compute firewall-rules {verb} {name} --project={}{network}{direction_flag} {range_flag} --allow={} --description={}",
        spec.project,
        allow.join(","),
        q(body["description"].as_str().unwrap_or(""))
    )
}

pub(crate) fn create_cluster(spec: &Spec) -> String {
    let s = &spec.network.subnet;
    let c = &spec.cluster;
    let authorized: Vec<String> = c
        .authorized_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut words = vec![
        format!(
            "gcloud container clusters create {} --project={} --zone={}",
            c.name, spec.project, spec.zone
        ),
        format!("--network={} --subnetwork={}", spec.network.name, s.name),
        format!(
            "--enable-private-nodes --master-ipv4-cidr={}",
            c.master_cidr
        ),
        format!(
            "--enable-ip-alias --cluster-secondary-range-name={} --services-secondary-range-name={}",
            s.pods_range_name(),
            s.services_range_name()
        ),
        "--enable-master-authorized-networks".to_string(),
    ];
    if !authorized.is_empty() {
        words.push(format!(
            "--master-authorized-networks={}",
            authorized.join(",")
        ));
    }
    if c.private_endpoint {
        words.push("--enable-private-endpoint".into());
    }
    words.push(format!("--workload-pool={}.svc.id.goog --enable-shielded-nodes --shielded-secure-boot --shielded-integrity-monitoring", spec.project));
    words.push(format!(
        "--release-channel={} --num-nodes={} --machine-type={} --service-account={} --workload-metadata=GKE_METADATA --scopes=cloud-platform,userinfo-email",
        format!("{:?}", c.release_channel).to_lowercase(),
        c.nodes,
        c.machine_type,
        spec.node_service_account()
    ));
    let (key, value) = crate::desired::CLUSTER_LABEL;
    words.push(format!("--labels={key}={value}"));
    words.join(" ")
}

pub(crate) fn update_cluster(spec: &Spec) -> String {
    let c = &spec.cluster;
    let authorized: Vec<String> = c
        .authorized_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut command = format!(
        "gcloud container clusters update {} --project={} --zone={} --enable-master-authorized-networks",
        c.name, spec.project, spec.zone
    );
    if !authorized.is_empty() {
        command.push_str(&format!(
            " --master-authorized-networks={}",
            authorized.join(",")
        ));
    }
    command
}

pub(crate) fn create_service_account(spec: &Spec, id: &str) -> String {
    format!(
        "gcloud iam service-accounts create {id} --project={} --display-name={} --description={}",
        spec.project,
        q(&crate::nodesa::display_name(spec)),
        q(&crate::nodesa::description(spec))
    )
}

pub(crate) fn add_roles(spec: &Spec, roles: &[String]) -> String {
    roles
        .iter()
        .map(|role| {
            format!(
                "gcloud projects add-iam-policy-binding {} --member={} --role={role} --condition=None",
                spec.project,
                crate::nodesa::member(spec)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
