//! Certificates made at test time (`rcgen`), for the TLS servers the tests start.

/// A CA and a server certificate it issued for `localhost` and `127.0.0.1`, made now:
/// `(ca, server certificate, server key)`, PEM.
pub fn test_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: with rcgen's one default name for both, OpenSSL (redis-cli, the
    // cluster bus) takes the server certificate for a self-signed one and refuses it.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tower-api-key test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = server_params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), server.pem(), key.serialize_pem())
}
