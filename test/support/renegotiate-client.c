/*
 * A TLS 1.2 client that changes its certificate mid-connection: it handshakes with one
 * certificate, swaps in another, renegotiates, then sends one HTTP request and prints the
 * response. The attack on a server that trusts the first handshake's verdict for the
 * certificate it reads later. Built by test/support/renegotiate-client.ts with gcc and OpenSSL.
 *
 *   renegotiate-client HOST PORT FIRST_CERT FIRST_KEY SECOND_CERT SECOND_KEY REQUEST_FILE
 *
 * Exit 0: the response is on stdout. Exit 2: the server refused the renegotiation.
 * Exit 1: anything else (the reason is on stderr).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(int code, const char *what) {
  fprintf(stderr, "%s: ", what);
  unsigned long err = ERR_get_error();
  fprintf(stderr, "%s\n", err ? ERR_error_string(err, NULL) : "(no OpenSSL error)");
  exit(code);
}

static void use_identity(SSL *ssl, const char *cert, const char *key) {
  if (SSL_use_certificate_file(ssl, cert, SSL_FILETYPE_PEM) != 1) fail(1, "loading the certificate");
  if (SSL_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) != 1) fail(1, "loading the key");
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s HOST PORT FIRST_CERT FIRST_KEY SECOND_CERT SECOND_KEY REQUEST_FILE\n", argv[0]);
    return 1;
  }
  FILE *request_file = fopen(argv[7], "rb");
  if (!request_file) fail(1, "opening the request file");
  static char request[1 << 16];
  size_t request_len = fread(request, 1, sizeof request, request_file);
  fclose(request_file);

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2])) };
  if (fd < 0 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    perror("connecting");
    return 1;
  }

  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  // Renegotiation exists only up to TLS 1.2. The server's certificate is not what is tested.
  if (!ctx || SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1) fail(1, "creating the TLS context");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  use_identity(ssl, argv[3], argv[4]);
  if (SSL_connect(ssl) != 1) fail(1, "the first handshake");

  use_identity(ssl, argv[5], argv[6]);
  if (SSL_renegotiate(ssl) != 1 || SSL_do_handshake(ssl) != 1) fail(2, "renegotiation refused");

  if (SSL_write(ssl, request, (int)request_len) <= 0) fail(1, "sending the request");
  char buf[4096];
  int n;
  while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return 0;
}
