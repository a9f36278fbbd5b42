/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the CLI's transport to a running gateway's admin API with libcurl's
 * easy interface: one blocking request per verb, the admin key in the Authorization header,
 * never in the URL. Only the CLI links it; the gateway's request path never does.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "keys/key_hash.h"

#define MAX_REPLY_BYTES (64u << 20)

typedef struct reply_buf {
    char *data;
    size_t len;
    bool too_big;
} reply_buf_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    reply_buf_t *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > MAX_REPLY_BYTES) {
        b->too_big = true;
        return 0;
    }
    char *grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

bool kg_cli_http(const char *url, const char *admin_key, const char *method, const char *path, const char *query,
                 const char *body, int *status, char **reply, char *err, size_t err_cap)
{
    CURL *curl = NULL;
    struct curl_slist *headers = NULL;
    reply_buf_t buf = {0};
    char *full = NULL, *auth = NULL;
    bool ok = false;
    size_t base_len = strlen(url);

    while (base_len > 0 && url[base_len - 1] == '/')
        base_len--;
    if (asprintf(&full, "%.*s%s%s%s", (int)base_len, url, path, query != NULL ? "?" : "", query != NULL ? query : "") <
            0 ||
        asprintf(&auth, "Authorization: Bearer %s", admin_key) < 0) {
        snprintf(err, err_cap, "out of memory");
        goto out;
    }
    if ((curl = curl_easy_init()) == NULL) {
        snprintf(err, err_cap, "cannot initialise libcurl");
        goto out;
    }
    headers = curl_slist_append(headers, auth);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, full);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "keygate-cli");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        snprintf(err, err_cap, "cannot reach %.*s: %s", (int)base_len, url,
                 buf.too_big ? "the reply is too large" : curl_easy_strerror(rc));
        goto out;
    }
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    *status = (int)code;
    *reply = buf.data;
    buf.data = NULL;
    ok = true;
out:
    if (auth != NULL) {
        kg_secret_wipe(auth, strlen(auth));
        free(auth);
    }
    free(full);
    free(buf.data);
    curl_slist_free_all(headers);
    if (curl != NULL)
        curl_easy_cleanup(curl);
    return ok;
}
