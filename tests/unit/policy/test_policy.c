/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/policy/policy.c and src/keys/key_policy.c: the decision order, allowlist
 * wildcards, agents' environments, and the policy system message's content and order.
 */
#include <jansson.h>
#include <stdlib.h>

#include "../test.h"
#include "policy/policy.h"

static const char yaml[] =
    "environments: [{name: production, live: true}, {name: staging}]\n"
    "providers: [{name: demo, type: mock}, {name: off, base_url: 'http://127.0.0.1:1/v1', "
    "credential: gone}]\n"
    "credentials: {gone: env:KEYGATE_TEST_SURELY_UNSET}\n"
    "prompt_modules: [{name: a, text: 'Module \"A\".'}, {name: b, text: 'Module B.'}]\n"
    "models: [{name: gpt-4o, provider: demo, prompt_modules: [a]}, {name: gpt-4o-mini, provider: "
    "demo}, {name: o1, provider: demo}, {name: dead, provider: off}]\n"
    "agents: [{name: bot, model: gpt-4o-mini, prompt_modules: [b], environments: [production]}]\n";

typedef struct fixture {
    kg_config_t cfg;
    kg_catalog_t *cat;
} fixture_t;

static void setup(fixture_t *f)
{
    char err[256];
    kg_config_init(&f->cfg);
    CHECK(kg_config_parse(&f->cfg, yaml, sizeof(yaml) - 1, "t.yaml", err, sizeof(err)));
    f->cat = kg_catalog_build(&f->cfg, err, sizeof(err));
    CHECK(f->cat != NULL);
}

static void teardown(fixture_t *f)
{
    kg_catalog_free(f->cat);
    kg_config_dispose(&f->cfg);
}

/* A key view and compiled policy from token JSON members. */
static kg_key_policy_t *key(kg_key_view_t *v, const char *scopes, const char *allow, const char *modules,
                            const char *text, const char *env)
{
    kg_token_t t = {0};
    t.scopes = (char *)scopes, t.allow = (char *)allow, t.prompt_modules = (char *)modules,
    t.prompt_text = (char *)text;
    kg_key_policy_t *p = kg_key_policy_new(&t);
    memset(v, 0, sizeof(*v));
    snprintf(v->id, sizeof(v->id), "pk_test");
    v->org_id = KG_DEFAULT_ORG_ID, v->environment = env, v->team_id = "";
    v->type = KG_TOKEN_ACCESS;
    v->policy = p;
    return p;
}

static kg_err_t decide(fixture_t *f, kg_key_view_t *v, kg_route_kind_t r, const char *model, kg_decision_t *d)
{
    return kg_policy_decide(f->cat, v, v->policy, r, model, strlen(model), d);
}

void test_policy_decisions(void)
{
    fixture_t f;
    kg_key_view_t v;
    kg_decision_t d;
    setup(&f);

    kg_key_policy_t *all = key(&v, "[\"inference:chat\",\"inference:embed\"]", "{\"models\":\"*\",\"agents\":\"*\"}",
                               NULL, NULL, "production");
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "gpt-4o-mini", &d), KG_OK);
    CHECK(!d.prompt && d.agent == NULL);
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "gpt-4o", &d), KG_OK);
    CHECK(d.prompt); /* the model's own module */
    CHECK_INT(decide(&f, &v, KG_ROUTE_COMPLETIONS, "gpt-4o", &d), KG_EPOLICY_UNSUPPORTED_ROUTE);
    CHECK_INT(decide(&f, &v, KG_ROUTE_COMPLETIONS, "gpt-4o-mini", &d), KG_OK);
    CHECK_INT(decide(&f, &v, KG_ROUTE_EMBEDDINGS, "gpt-4o", &d), KG_OK); /* no messages to guard */
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "bot", &d), KG_OK);
    CHECK(d.agent != NULL && strcmp(d.model->name, "gpt-4o-mini") == 0 && d.prompt);
    /* What allowed it is worded on demand (keygate explain), not on every decision. */
    char allowed[192];
    kg_policy_allowed_rule(&d, KG_ROUTE_CHAT, "bot", 3, allowed, sizeof(allowed));
    CHECK_STR(allowed, "allowed: scope inference:chat; agent 'bot' in allow.agents; policy system message inserted");
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "nope", &d), KG_EMODEL_NOT_FOUND);
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "dead", &d), KG_EPROVIDER_UNAVAILABLE);
    kg_key_policy_free(all);

    /* Scope first: a key without chat is refused before any name is looked at. */
    kg_key_policy_t *embed = key(&v, "[\"inference:embed\"]", "{\"models\":\"*\"}", NULL, NULL, "production");
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "nope", &d), KG_EINSUFFICIENT_SCOPE);
    CHECK(strstr(d.rule, "inference:chat") != NULL);
    CHECK_INT(decide(&f, &v, KG_ROUTE_EMBEDDINGS, "gpt-4o", &d), KG_OK);
    kg_key_policy_free(embed);

    /* Wildcards: a trailing '*' is a prefix; no agents allowed; staging key. */
    kg_key_policy_t *narrow =
        key(&v, "[\"inference:chat\"]", "{\"models\":[\"gpt-4o*\"],\"agents\":[]}", NULL, NULL, "staging");
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "gpt-4o-mini", &d), KG_OK);
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "o1", &d), KG_EMODEL_NOT_ALLOWED);
    CHECK(strstr(d.rule, "allow.models") != NULL);
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "bot", &d), KG_EMODEL_NOT_ALLOWED);
    CHECK(strstr(d.rule, "allow.agents") != NULL);
    kg_key_policy_free(narrow);

    kg_key_policy_t *stg =
        key(&v, "[\"inference:chat\"]", "{\"models\":\"*\",\"agents\":[\"b*\"]}", NULL, NULL, "staging");
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "bot", &d), KG_EENVIRONMENT_MISMATCH);
    kg_key_policy_free(stg);

    /* Another org sees nothing of the config's catalog: 404, not 403. */
    kg_key_policy_t *other = key(&v, "[\"inference:chat\"]", "{\"models\":\"*\"}", NULL, NULL, "production");
    v.org_id = "org_other";
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "gpt-4o", &d), KG_EMODEL_NOT_FOUND);
    kg_key_policy_free(other);
    teardown(&f);
}

void test_policy_system_message(void)
{
    fixture_t f;
    kg_key_view_t v;
    kg_decision_t d;
    char buf[1024];
    setup(&f);
    kg_key_policy_t *p = key(&v, "[\"inference:chat\"]", "{\"models\":\"*\",\"agents\":\"*\"}", "[\"a\",\"b\"]",
                             "Answer in \"French\".\nAlways.", "production");
    CHECK_INT(decide(&f, &v, KG_ROUTE_CHAT, "bot", &d), KG_OK);
    size_t len = kg_policy_system_message(f.cat, &v, p, &d, buf, sizeof(buf));
    CHECK(len > 0 && len == kg_policy_system_message_len(f.cat, &v, p, &d));
    buf[len] = '\0';
    json_t *msg = json_loads(buf, 0, NULL);
    CHECK(msg != NULL);
    CHECK_STR(json_string_value(json_object_get(msg, "role")), "system");
    /* The agent's modules, then the key's modules, then the key's text, in one message. */
    CHECK_STR(json_string_value(json_object_get(msg, "content")),
              "Module B.\n\nModule \"A\".\n\nModule B.\n\nAnswer in \"French\".\nAlways.");
    json_decref(msg);
    CHECK_INT(kg_policy_system_message(f.cat, &v, p, &d, buf, 10), 0); /* never overruns */
    kg_key_policy_free(p);

    /* Allowlist matching at the edges. */
    kg_allow_list_t list = {.n = 2, .patterns = (char *[]){"gpt-4o*", "o1"}};
    CHECK(kg_allow_list_match(&list, "gpt-4o", 6));
    CHECK(kg_allow_list_match(&list, "gpt-4o-2024", 11));
    CHECK(!kg_allow_list_match(&list, "gpt-4", 5));
    CHECK(kg_allow_list_match(&list, "o1", 2));
    CHECK(!kg_allow_list_match(&list, "o1-mini", 7));
    CHECK(!kg_allow_list_match(&list, "", 0));
    teardown(&f);
}

void test_policy_shared_between_keys_alike(void)
{
    kg_token_t a = {0}, b = {0}, c = {0}, d = {0};
    a.scopes = b.scopes = c.scopes = d.scopes = (char *)"[\"inference:chat\"]";
    a.rate_limits = b.rate_limits = (char *)"{\"rpm\":5}";
    c.rate_limits = (char *)"{\"rpm\":6}";
    d.prompt_text = (char *)""; /* present but empty is not absent */
    kg_key_policy_t *pa = kg_key_policy_acquire(&a), *pb = kg_key_policy_acquire(&b);
    kg_key_policy_t *pc = kg_key_policy_acquire(&c), *pd = kg_key_policy_acquire(&d);
    kg_token_t e = d;
    e.prompt_text = NULL;
    kg_key_policy_t *pe = kg_key_policy_acquire(&e);
    CHECK(pa == pb); /* the same members: one compiled policy */
    CHECK(pa != pc && pc->limits.rpm == 6 && pa->limits.rpm == 5);
    CHECK(pd != pe);
    kg_key_policy_release(pa);
    CHECK(kg_key_policy_acquire(&a) == pb); /* still held by b */
    kg_key_policy_release(pb);
    kg_key_policy_release(pb);
    kg_key_policy_t *again = kg_key_policy_acquire(&a); /* the last reference went: compiled anew */
    CHECK(again != NULL && again->limits.rpm == 5 && again->refs == 1);
    kg_key_policy_release(again);
    kg_key_policy_release(pc);
    kg_key_policy_release(pd);
    kg_key_policy_release(pe);

    /* Right after a policy with a short member, one whose member starts the same but is longer:
     * a different policy (and, under ASan, no read past the kept signature's end). */
    kg_token_t s1 = {0}, s2 = {0};
    s1.team_id = (char *)"t", s2.team_id = (char *)"t-much-longer-than-the-first";
    kg_key_policy_t *p1 = kg_key_policy_acquire(&s1), *p2 = kg_key_policy_acquire(&s2);
    CHECK(p1 != p2);
    CHECK_STR(p2->team_id, "t-much-longer-than-the-first");
    kg_key_policy_release(p1);
    kg_key_policy_release(p2);
}
