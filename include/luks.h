/* SPDX-License-Identifier: GPL-2.0 */
/*
 * LUKS1 volume headers and the sector ciphers of encrypted images, over
 * OpenSSL's libcrypto (lib/luks.c).  A format that stores a LUKS header
 * (qcow2's encryption extension) hands its bytes here, gets back a
 * sector cipher keyed with the unlocked master key, and numbers the
 * sectors itself.  The same cipher serves qcow2's legacy AES-CBC.
 */
#ifndef IMGBLK_LUKS_H
#define IMGBLK_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LUKS_SECTOR		512
#define LUKS_HDR_BYTES		592
#define LUKS_NUM_SLOTS		8
#define LUKS_STRIPES		4000
#define LUKS_MAX_KEY_BYTES	64
#define LUKS_DIGEST_BYTES	20
#define LUKS_SALT_BYTES		32
#define LUKS_SLOT_ACTIVE	0x00ac71f3U
#define LUKS_SLOT_INACTIVE	0x0000deadU
/* Key material and the whole header area are aligned to this, as QEMU lays them. */
#define LUKS_ALIGN_BYTES	4096

/*
 * The most CPU time trying every active key slot may take, estimated
 * from this machine's PBKDF2 speed before anything runs.  QEMU sizes a
 * slot for 2 s (iter-time) on the machine that made it; a header asking
 * for far more (a hostile image can ask 2^32 iterations in 8 slots) is
 * refused instead of burning minutes of CPU.
 */
#define LUKS_MAX_UNLOCK_MS	20000

/* IV generators of the cipher mode string ("xts-plain64", "cbc-essiv:sha256"). */
enum luks_ivgen {
	LUKS_IV_PLAIN,		/* sector number, low 32 bits, little-endian */
	LUKS_IV_PLAIN64,	/* sector number, 64 bits, little-endian */
	LUKS_IV_ESSIV,		/* plain64 encrypted with the hash of the key */
};

/* A sector cipher: AES in XTS or CBC mode, one IV per 512-byte sector. */
struct luks_cipher {
	void *enc;		/* EVP_CIPHER_CTX templates, keyed */
	void *dec;
	void *essiv;		/* AES-ECB keyed with hash(master key), or NULL */
	enum luks_ivgen ivgen;
	unsigned int iv_bytes;
};

/* One key slot, as the header has it (host order). */
struct luks_slot {
	uint32_t active;
	uint32_t iters;
	uint8_t salt[LUKS_SALT_BYTES];
	uint32_t key_offset_sectors;	/* from the header's start */
	uint32_t stripes;
};

/* A parsed LUKS1 header, and what `info` shows of it. */
struct luks_hdr {
	char cipher_name[33];		/* "aes" */
	char cipher_mode[33];		/* "xts-plain64" */
	char hash[33];			/* "sha256" */
	uint32_t payload_sectors;
	uint32_t key_bytes;
	uint8_t mk_digest[LUKS_DIGEST_BYTES];
	uint8_t mk_salt[LUKS_SALT_BYTES];
	uint32_t mk_iters;
	char uuid[41];
	struct luks_slot slot[LUKS_NUM_SLOTS];
	/* Derived from cipher_mode. */
	char mode[16];			/* "xts", "cbc" */
	enum luks_ivgen ivgen;
	char ivgen_hash[16];		/* ESSIV's hash, else "" */
};

/*
 * Parses and checks the LUKS1 header at the start of @buf; every key
 * slot's material must lie inside the @area_bytes the header owns.
 * Unsupported ciphers, modes and hashes are refused, and so are
 * iteration counts that would take more than LUKS_MAX_UNLOCK_MS.  On error @why (@why_len bytes) says why.
 * Returns 0, -EINVAL (not a LUKS1 header, or malformed) or -ENOTSUP.
 */
int luks_parse(const void *buf, size_t area_bytes, struct luks_hdr *h, char *why,
	       size_t why_len);

/*
 * Finds the key slot @pass opens, in the header area @area (the
 * @area_bytes that luks_parse() checked), and keys @c with the master
 * key.  Returns 0, -EACCES when no slot opens, -ENOMEM, or -EIO on a
 * library failure.
 */
int luks_unlock(const struct luks_hdr *h, const void *area, size_t area_bytes,
		const void *pass, size_t pass_len, struct luks_cipher *c);

/* What a new LUKS1 volume gets (`create -o encrypt.*`). */
struct luks_params {
	const char *cipher_alg;		/* "aes-256" (aes-128, aes-192) */
	const char *cipher_mode;	/* "xts" or "cbc" */
	const char *ivgen_alg;		/* "plain64", "plain", "essiv" */
	const char *ivgen_hash_alg;	/* for essiv: "sha256" */
	const char *hash_alg;		/* "sha256" (sha1, sha384, sha512) */
	uint64_t iter_time_ms;		/* PBKDF2 time per key slot, 2000 */
};

/* The bytes a header with @p's key size takes (4 KiB aligned). */
int64_t luks_area_bytes(const struct luks_params *p);

/*
 * Writes a new LUKS1 header with a random master key into @area
 * (luks_area_bytes(), zeroed first), its key slot 0 opened by @pass.
 * On error @why says why.  Returns 0, -EINVAL (bad parameters) or -EIO.
 */
int luks_format(const struct luks_params *p, const void *pass, size_t pass_len,
		void *area, size_t area_bytes, char *why, size_t why_len);

/*
 * Keys @c for AES-@key_bits in @mode ("xts", "cbc") with @ivgen (and
 * @ivgen_hash for ESSIV).  Returns 0, -ENOTSUP or -EIO.
 */
int luks_cipher_init(struct luks_cipher *c, const char *mode, unsigned int key_bits,
		     enum luks_ivgen ivgen, const char *ivgen_hash, const uint8_t *key);

/*
 * En- or decrypts @len bytes (a multiple of 512) from @in to @out (which
 * may be @in), sectors numbered from @sector.  Safe from many threads.
 * Returns 0 or -EIO.
 */
int luks_cipher_run(const struct luks_cipher *c, bool encrypt, uint64_t sector,
		    const void *in, void *out, size_t len);

void luks_cipher_free(struct luks_cipher *c);

/*
 * Memory for key material: locked against swap (best effort: without
 * the privilege it stays unlocked) and left out of core dumps.  Freed by
 * luks_key_free(), which wipes it.
 */
void *luks_key_alloc(size_t len);
void luks_key_free(void *p, size_t len);

#endif
