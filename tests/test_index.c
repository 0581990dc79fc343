/* Unit tests for storage/index against a real LMDB environment in a
 * temporary directory. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <lmdb.h>

#include "../common/err.h"
#include "../storage/index.h"

#define D1 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define D2 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define UUID "0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c1a2f"
#define MAP_SIZE ((size_t)16 << 20)

/* Each test gets its own directory and environment (tests run in parallel
 * processes). */
static char dir[64];
static struct index *ix;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/regtest-index-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(index_open(dir, MAP_SIZE, &ix), REG_OK);
    cr_assert_not_null(ix);
}

static void teardown(void)
{
    index_close(ix);
    ix = NULL;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(index, .init = setup, .fini = teardown);

static struct index_txn *begin(int writable)
{
    struct index_txn *t = NULL;

    cr_assert_eq(index_begin(ix, writable, &t), REG_OK);
    cr_assert_not_null(t);
    return t;
}

/* --- open ------------------------------------------------------------------- */

Test(index, open_fails_on_a_missing_directory)
{
    struct index *other = (struct index *)1;
    char missing[128];

    snprintf(missing, sizeof(missing), "%s/no/such/dir", dir);
    cr_assert_neq(index_open(missing, MAP_SIZE, &other), REG_OK);
    cr_assert_null(other);
}

/* --- blobs -------------------------------------------------------------------- */

Test(index, unknown_blob_is_blob_unknown)
{
    struct index_txn *t = begin(0);
    struct index_blob b;

    cr_assert_eq(index_get_blob(t, D1, &b), REG_E_BLOB_UNKNOWN);
    index_abort(t);
}

Test(index, added_blob_reads_back_with_size_and_time)
{
    struct index_txn *t = begin(1);
    struct index_blob b;
    time_t before = time(NULL);

    cr_assert_eq(index_add_blob(t, D1, 12345), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    cr_assert_eq(b.size, 12345);
    cr_assert_eq(b.refcount, 0);
    cr_assert_geq(b.touched, (int64_t)before);
    cr_assert_leq(b.touched, (int64_t)time(NULL));
    cr_assert_eq(index_get_blob(t, D2, &b), REG_E_BLOB_UNKNOWN);
    index_abort(t);
}

Test(index, adding_a_blob_twice_keeps_the_first_record)
{
    struct index_txn *t = begin(1);
    struct index_blob b;

    cr_assert_eq(index_add_blob(t, D1, 10), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(1);
    cr_assert_eq(index_add_blob(t, D1, 20), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    cr_assert_eq(b.size, 10);
    index_abort(t);
}

/* --- repositories and links ----------------------------------------------------- */

Test(index, link_makes_blob_visible_in_that_repo_only)
{
    struct index_txn *t = begin(1);

    cr_assert_eq(index_repo_has_blob(t, "a/b", D1), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_link_blob(t, "a/b", D1), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_repo_has_blob(t, "a/b", D1), REG_OK);
    cr_assert_eq(index_repo_has_blob(t, "a/b", D2), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_repo_has_blob(t, "a", D1), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_repo_has_blob(t, "a/bc", D1), REG_E_BLOB_UNKNOWN);
    index_abort(t);
}

Test(index, link_records_the_repo)
{
    struct index_txn *t = begin(1);

    cr_assert_eq(index_repo_exists(t, "lib/x"), REG_E_NAME_UNKNOWN);
    cr_assert_eq(index_link_blob(t, "lib/x", D1), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_repo_exists(t, "lib/x"), REG_OK);
    cr_assert_eq(index_repo_exists(t, "lib"), REG_E_NAME_UNKNOWN);
    cr_assert_eq(index_repo_exists(t, "lib/x/y"), REG_E_NAME_UNKNOWN);
    index_abort(t);
}

Test(index, add_repo_twice_is_fine)
{
    struct index_txn *t = begin(1);

    cr_assert_eq(index_add_repo(t, "r"), REG_OK);
    cr_assert_eq(index_add_repo(t, "r"), REG_OK);
    cr_assert_eq(index_repo_exists(t, "r"), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
}

Test(index, unlink_hides_the_blob_but_keeps_the_repo_and_blob_record)
{
    struct index_txn *t = begin(1);
    struct index_blob b;

    cr_assert_eq(index_add_blob(t, D1, 3), REG_OK);
    cr_assert_eq(index_link_blob(t, "r", D1), REG_OK);
    cr_assert_eq(index_link_blob(t, "s", D1), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(1);
    cr_assert_eq(index_unlink_blob(t, "r", D1), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_repo_has_blob(t, "r", D1), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_repo_has_blob(t, "s", D1), REG_OK);
    cr_assert_eq(index_repo_exists(t, "r"), REG_OK);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    index_abort(t);
}

Test(index, unlink_of_an_absent_link_is_not_an_error)
{
    struct index_txn *t = begin(1);

    cr_assert_eq(index_unlink_blob(t, "r", D1), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
}

Test(index, oversized_keys_are_refused)
{
    struct index_txn *t = begin(1);
    char big[600];

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_neq(index_add_repo(t, big), REG_OK);
    cr_assert_neq(index_link_blob(t, big, D1), REG_OK);
    cr_assert_neq(index_add_repo(t, ""), REG_OK);
    index_abort(t);
}

/* --- upload records ------------------------------------------------------------ */

static void fill_upload(struct index_upload *u, const char *repo, uint32_t state_len)
{
    uint32_t i;

    memset(u, 0, sizeof(*u));
    snprintf(u->repo, sizeof(u->repo), "%s", repo);
    u->offset = 0x123456789aULL;
    u->updated = 1700000000;
    u->algo = 2;
    u->state_len = state_len;
    for (i = 0; i < state_len; i++)
        u->state[i] = (unsigned char)(i * 7 + 1); /* includes zero bytes */
}

Test(index, upload_record_round_trips_every_field)
{
    struct index_upload in, out;
    struct index_txn *t = begin(1);

    fill_upload(&in, "team/app", 224);
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    memset(&out, 0xee, sizeof(out));
    cr_assert_eq(index_get_upload(t, UUID, &out), REG_OK);
    index_abort(t);
    cr_assert_str_eq(out.repo, "team/app");
    cr_assert_eq(out.offset, in.offset);
    cr_assert_eq(out.updated, in.updated);
    cr_assert_eq(out.algo, in.algo);
    cr_assert_eq(out.state_len, 224);
    cr_assert_arr_eq(out.state, in.state, 224);
}

Test(index, upload_record_with_full_state_and_longest_repo_round_trips)
{
    struct index_upload in, out;
    struct index_txn *t = begin(1);
    char repo[256];

    memset(repo, 'r', 255);
    repo[255] = '\0';
    fill_upload(&in, repo, INDEX_HASH_STATE_MAX);
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    cr_assert_eq(index_get_upload(t, UUID, &out), REG_OK);
    index_abort(t);
    cr_assert_str_eq(out.repo, repo);
    cr_assert_eq(out.state_len, INDEX_HASH_STATE_MAX);
    cr_assert_arr_eq(out.state, in.state, INDEX_HASH_STATE_MAX);
}

Test(index, upload_record_without_state_round_trips)
{
    struct index_upload in, out;
    struct index_txn *t = begin(1);

    fill_upload(&in, "r", 0);
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    cr_assert_eq(index_get_upload(t, UUID, &out), REG_OK);
    index_abort(t);
    cr_assert_eq(out.state_len, 0);
    cr_assert_str_eq(out.repo, "r");
    cr_assert_eq(out.offset, in.offset);
}

Test(index, upload_record_is_replaced_by_a_later_put)
{
    struct index_upload in, out;
    struct index_txn *t = begin(1);

    fill_upload(&in, "first/repo", 200);
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    fill_upload(&in, "r", 16);
    in.offset = 7;
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_get_upload(t, UUID, &out), REG_OK);
    index_abort(t);
    cr_assert_str_eq(out.repo, "r");
    cr_assert_eq(out.offset, 7);
    cr_assert_eq(out.state_len, 16);
}

Test(index, oversized_upload_state_is_refused)
{
    struct index_upload in;
    struct index_txn *t = begin(1);

    fill_upload(&in, "r", 0);
    in.state_len = INDEX_HASH_STATE_MAX + 1;
    cr_assert_neq(index_put_upload(t, UUID, &in), REG_OK);
    index_abort(t);
}

Test(index, deleted_upload_record_is_upload_unknown)
{
    struct index_upload in, out;
    struct index_txn *t = begin(1);

    fill_upload(&in, "r", 8);
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(1);
    cr_assert_eq(index_del_upload(t, UUID), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_get_upload(t, UUID, &out), REG_E_UPLOAD_UNKNOWN);
    index_abort(t);
    t = begin(1);
    cr_assert_eq(index_del_upload(t, UUID), REG_OK); /* absent: not an error */
    cr_assert_eq(index_commit(t), REG_OK);
}

/* --- transactions ---------------------------------------------------------------- */

Test(index, aborted_write_txn_leaves_nothing)
{
    struct index_upload in, out;
    struct index_txn *t = begin(1);
    struct index_blob b;

    fill_upload(&in, "r", 8);
    cr_assert_eq(index_add_blob(t, D1, 5), REG_OK);
    cr_assert_eq(index_link_blob(t, "r", D1), REG_OK);
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    /* The txn sees its own writes... */
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    cr_assert_eq(index_repo_has_blob(t, "r", D1), REG_OK);
    index_abort(t);
    /* ...and nobody sees them after the abort. */
    t = begin(0);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_repo_has_blob(t, "r", D1), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_repo_exists(t, "r"), REG_E_NAME_UNKNOWN);
    cr_assert_eq(index_get_upload(t, UUID, &out), REG_E_UPLOAD_UNKNOWN);
    index_abort(t);
}

Test(index, read_txn_sees_a_snapshot_and_does_not_block_the_writer)
{
    struct index_txn *r1 = begin(0), *w, *r2;
    struct index_blob b;

    w = begin(1);
    cr_assert_eq(index_add_blob(w, D1, 1), REG_OK);
    cr_assert_eq(index_get_blob(r1, D1, &b), REG_E_BLOB_UNKNOWN); /* uncommitted */
    cr_assert_eq(index_commit(w), REG_OK);
    cr_assert_eq(index_get_blob(r1, D1, &b), REG_E_BLOB_UNKNOWN); /* older snapshot */
    r2 = begin(0);
    cr_assert_eq(index_get_blob(r2, D1, &b), REG_OK);
    index_abort(r2);
    index_abort(r1);
}

Test(index, committed_data_survives_close_and_reopen)
{
    struct index_upload in, out;
    struct index_txn *t = begin(1);
    struct index_blob b;

    fill_upload(&in, "r/s", 100);
    cr_assert_eq(index_add_blob(t, D1, 42), REG_OK);
    cr_assert_eq(index_link_blob(t, "r/s", D1), REG_OK);
    cr_assert_eq(index_put_upload(t, UUID, &in), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    /* Uncommitted at close time: must not come back. */
    t = begin(1);
    cr_assert_eq(index_add_blob(t, D2, 1), REG_OK);
    index_abort(t);

    index_close(ix);
    ix = NULL;
    cr_assert_eq(index_open(dir, MAP_SIZE, &ix), REG_OK);

    t = begin(0);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    cr_assert_eq(b.size, 42);
    cr_assert_eq(index_get_blob(t, D2, &b), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_repo_has_blob(t, "r/s", D1), REG_OK);
    cr_assert_eq(index_repo_exists(t, "r/s"), REG_OK);
    cr_assert_eq(index_get_upload(t, UUID, &out), REG_OK);
    index_abort(t);
    cr_assert_str_eq(out.repo, "r/s");
    cr_assert_eq(out.offset, in.offset);
    cr_assert_arr_eq(out.state, in.state, 100);
}

/* --- totals for monitoring ------------------------------------------------- */

static struct index_stats stats(void)
{
    struct index_stats st;

    cr_assert_eq(index_stats(ix, &st), REG_OK);
    return st;
}

Test(index, stats_count_blobs_repos_and_uploads_and_sum_blob_sizes)
{
    struct index_txn *t = begin(1);
    struct index_upload u;
    struct index_stats st;

    memset(&u, 0, sizeof(u));
    snprintf(u.repo, sizeof(u.repo), "r");
    cr_assert_eq(index_add_blob(t, D1, 10), REG_OK);
    cr_assert_eq(index_add_blob(t, D2, 2000), REG_OK);
    cr_assert_eq(index_add_blob(t, D1, 10), REG_OK, "pushed again: counted once");
    cr_assert_eq(index_add_repo(t, "a"), REG_OK);
    cr_assert_eq(index_add_repo(t, "b"), REG_OK);
    cr_assert_eq(index_put_upload(t, UUID, &u), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    st = stats();
    cr_assert_eq(st.blobs, 2);
    cr_assert_eq(st.blob_bytes, 2010);
    cr_assert_eq(st.repos, 2);
    cr_assert_eq(st.uploads, 1);
    cr_assert_eq(st.limit_bytes, MAP_SIZE);
    cr_assert_gt(st.map_bytes, MAP_SIZE, "the headroom for deletes is mapped too");
    cr_assert_gt(st.used_bytes, 0);

    t = begin(INDEX_WRITE_FREEING);
    cr_assert_eq(index_remove_blob(t, D2), REG_OK);
    cr_assert_eq(index_remove_blob(t, D2), REG_OK, "removing what is gone changes nothing");
    cr_assert_eq(index_commit(t), REG_OK);
    st = stats();
    cr_assert_eq(st.blobs, 1);
    cr_assert_eq(st.blob_bytes, 10);
}

Test(index, aborted_blob_add_leaves_the_total_alone)
{
    struct index_txn *t = begin(1);

    cr_assert_eq(index_add_blob(t, D1, 10), REG_OK);
    index_abort(t);
    cr_assert_eq(stats().blob_bytes, 0);
    cr_assert_eq(stats().blobs, 0);
}

Test(index, blob_total_agrees_with_the_records_for_fsck)
{
    struct index_txn *t = begin(1);
    size_t bad = 1;

    cr_assert_eq(index_add_blob(t, D1, 10), REG_OK);
    cr_assert_eq(index_add_blob(t, D2, 20), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(0);
    cr_assert_eq(index_check_counts(t, NULL, NULL, &bad), REG_OK);
    cr_assert_eq(bad, 0);
    index_abort(t);
}

/* What an index of schema 1 looks like: no blob_bytes in meta. */
static void make_schema_1(void)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    uint32_t one = 1;
    MDB_val vk = {7, "version"}, vv = {sizeof(one), &one}, bk = {10, "blob_bytes"};

    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, (size_t)64 << 20);
    cr_assert_eq(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    cr_assert_eq(mdb_put(txn, meta, &vk, &vv, 0), 0);
    cr_assert_eq(mdb_del(txn, meta, &bk, NULL), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

Test(index, upgrade_to_schema_2_sums_the_blob_sizes_once)
{
    struct index_txn *t = begin(1);
    struct index *ro = NULL;

    cr_assert_eq(index_add_blob(t, D1, 10), REG_OK);
    cr_assert_eq(index_add_blob(t, D2, 32), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    index_close(ix);
    ix = NULL;
    make_schema_1();
    cr_assert_eq(index_open_readonly(dir, &ro), REG_OK);
    cr_assert_eq(index_current(ro), 0, "read-only opens before the upgrade say so");
    index_close(ro);
    cr_assert_eq(index_open(dir, MAP_SIZE, &ix), REG_OK);
    cr_assert_eq(index_current(ix), 1);
    cr_assert_eq(stats().blob_bytes, 42);
    cr_assert_eq(stats().blobs, 2);
}

/* --- blobs that arrive after their manifest (the pull-through cache) ---------- */

static void no_problem(void *arg, const char *what)
{
    (void)arg;
    cr_log_error("count problem: %s", what);
}

static size_t count_problems(void)
{
    struct index_txn *t = begin(INDEX_READ);
    size_t bad = 99;

    cr_assert_eq(index_check_counts(t, no_problem, NULL, &bad), REG_OK);
    index_abort(t);
    return bad;
}

static void put_manifest(const char *repo, const char *digest, const char *ref)
{
    struct index_txn *t = begin(INDEX_WRITE);
    struct index_manifest m;
    const char *refs[1] = {ref};
    int created = 0;

    memset(&m, 0, sizeof(m));
    snprintf(m.media_type, sizeof(m.media_type), "application/vnd.oci.image.manifest.v1+json");
    m.size = 2;
    cr_assert_eq(index_put_manifest(t, repo, digest, &m, refs, 1, "{}", 2, &created), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
}

Test(index, a_blob_stored_after_its_manifests_starts_with_their_references)
{
    struct index_txn *t;
    struct index_blob b;

    put_manifest("mirror/a", D2, D1); /* D1 is not stored yet */
    put_manifest("mirror/b", D2, D1);
    cr_assert_eq(count_problems(), 0);
    t = begin(INDEX_WRITE);
    cr_assert_eq(index_add_blob(t, D1, 3), REG_OK);
    cr_assert_eq(index_link_blob(t, "mirror/a", D1), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(INDEX_READ);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    index_abort(t);
    cr_assert_eq(b.refcount, 2, "the blob counts both manifests: %llu",
                 (unsigned long long)b.refcount);
    cr_assert_eq(count_problems(), 0);
    t = begin(INDEX_WRITE_FREEING);
    cr_assert_eq(index_delete_manifest(t, "mirror/a", D2), REG_OK);
    cr_assert_eq(index_delete_manifest(t, "mirror/b", D2), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(INDEX_READ);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    index_abort(t);
    cr_assert_eq(b.refcount, 0);
    cr_assert_eq(count_problems(), 0);
}

Test(index, references_to_a_missing_blob_go_away_with_their_manifest)
{
    struct index_txn *t;
    struct index_blob b;

    put_manifest("mirror/a", D2, D1);
    t = begin(INDEX_WRITE_FREEING);
    cr_assert_eq(index_delete_manifest(t, "mirror/a", D2), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(INDEX_WRITE);
    cr_assert_eq(index_add_blob(t, D1, 3), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(INDEX_READ);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    index_abort(t);
    cr_assert_eq(b.refcount, 0);
    cr_assert_eq(count_problems(), 0);
}

Test(index, recount_and_a_removed_record_keep_pending_references)
{
    struct index_txn *t;
    struct index_blob b;

    t = begin(INDEX_WRITE);
    cr_assert_eq(index_add_blob(t, D1, 3), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    put_manifest("r", D2, D1);
    t = begin(INDEX_WRITE_FREEING);
    cr_assert_eq(index_remove_blob(t, D1), REG_OK); /* fsck --repair of a lost file */
    cr_assert_eq(index_commit(t), REG_OK);
    cr_assert_eq(count_problems(), 0);
    t = begin(INDEX_WRITE);
    cr_assert_eq(index_recount(t), REG_OK);
    cr_assert_eq(index_add_blob(t, D1, 3), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    t = begin(INDEX_READ);
    cr_assert_eq(index_get_blob(t, D1, &b), REG_OK);
    index_abort(t);
    cr_assert_eq(b.refcount, 1);
    cr_assert_eq(count_problems(), 0);
}

Test(index, cached_tags_record_when_they_were_fetched)
{
    struct index_txn *t = begin(INDEX_WRITE);
    int64_t when = 0;

    cr_assert_eq(index_get_cached(t, "m/r", "latest", &when), REG_E_NOT_FOUND);
    cr_assert_eq(index_set_cached(t, "m/r", "latest", 1234), REG_OK);
    cr_assert_eq(index_set_cached(t, "m/r", NULL, 1), REG_OK);
    cr_assert_eq(index_get_cached(t, "m/r", "latest", &when), REG_OK);
    cr_assert_eq(when, 1234);
    cr_assert_eq(index_get_cached(t, "m/r", NULL, &when), REG_OK);
    cr_assert_eq(when, 1);
    cr_assert_eq(index_del_cached(t, "m/r", "latest"), REG_OK);
    cr_assert_eq(index_del_cached(t, "m/r", "latest"), REG_OK);
    cr_assert_eq(index_get_cached(t, "m/r", "latest", &when), REG_E_NOT_FOUND);
    index_abort(t);
}
