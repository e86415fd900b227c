/**
 * A small certificate authority for the tests of the authenticated mode with certificates of
 * one's own: a self-signed CA, and certificates it issues for P2SN keys. Made with node-forge.
 * @module
 */
import forge from 'node-forge'
import type { KeyPair } from '../../lib/index.js'

/** A CA: its certificate (PEM) and a way to certify a key. */
export interface TestCa {
  /** The CA's certificate, for `ca`. */
  cert: string
  /** A certificate for `keyPair`'s public key, for the host name `host`, signed by this CA. */
  issue: (keyPair: KeyPair, host?: string) => string
}

function forgeKeys (keyPair: KeyPair): { publicKey: forge.pki.rsa.PublicKey, privateKey: forge.pki.rsa.PrivateKey } {
  return {
    publicKey: forge.pki.publicKeyFromPem(keyPair.publicKey.toPem()),
    privateKey: forge.pki.privateKeyFromPem(keyPair.privateKey.toPem())
  }
}

let serial = 1

function certificate (subject: string, publicKey: forge.pki.rsa.PublicKey, issuer: forge.pki.Certificate | undefined, extensions: object[]): forge.pki.Certificate {
  const cert = forge.pki.createCertificate()
  cert.publicKey = publicKey
  cert.serialNumber = (serial++).toString(16).padStart(2, '0')
  cert.validity.notBefore = new Date(Date.now() - 3_600_000)
  cert.validity.notAfter = new Date(Date.now() + 86_400_000)
  cert.setSubject([{ name: 'commonName', value: subject }])
  cert.setIssuer(issuer === undefined ? [{ name: 'commonName', value: subject }] : issuer.subject.attributes)
  cert.setExtensions(extensions)
  return cert
}

/** A new CA whose own key is `keyPair`. */
export function makeCa (keyPair: KeyPair): TestCa {
  const keys = forgeKeys(keyPair)
  const caCert = certificate('p2sn test ca', keys.publicKey, undefined, [
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }
  ])
  caCert.sign(keys.privateKey, forge.md.sha256.create())
  return {
    cert: forge.pki.certificateToPem(caCert),
    issue: (subjectKeys, host = 'localhost') => {
      const cert = certificate(host, forgeKeys(subjectKeys).publicKey, caCert, [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
        { name: 'subjectAltName', altNames: [{ type: 2, value: host }] }
      ])
      cert.sign(keys.privateKey, forge.md.sha256.create())
      return forge.pki.certificateToPem(cert)
    }
  }
}
