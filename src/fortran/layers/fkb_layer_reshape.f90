!! Keras 3 Reshape (target_shape), Permute (dims, 1-based) and RepeatVector (n).
!!
!! Reshape changes only the per-sample shape: the values stay in place, so the network treats
!! it like Flatten (`is_identity`: no step, the output aliases the input); its forward copies
!! x to y for callers that run it on its own. Permute gathers each sample through an index
!! map computed in configure. RepeatVector turns (C,) into (n, C).
module fkb_layer_reshape
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_SHAPE, set_error
  use fkb_config, only: fkb_config_t, int_text
  use fkb_layer, only: fkb_layer_t
  implicit none
  private
  public :: fkb_reshape_t, parse_int_list, int_list_text

  integer, parameter :: OP_RESHAPE = 1, OP_PERMUTE = 2, OP_REPEAT = 3

  type, extends(fkb_layer_t) :: fkb_reshape_t
    integer :: op = OP_RESHAPE
    integer(int64), allocatable :: target(:)   !! reshape: target_shape
    integer(int64), allocatable :: dims(:)     !! permute: dims (1-based)
    integer(int64) :: n = 1                    !! repeat_vector
    integer(int64), allocatable :: src(:)      !! permute: y(i) = x(src(i)) within a sample
  contains
    procedure :: configure => reshape_configure
    procedure :: options => reshape_options
    procedure :: is_identity => reshape_is_identity
    procedure :: forward_r32 => reshape_forward_r32
    procedure :: forward_r64 => reshape_forward_r64
  end type fkb_reshape_t

contains

  subroutine parse_int_list(cfg, key, v, stat, msg)
    !! Reads option `key` as a comma-separated list of integers >= 1 (e.g. `4,6`).
    type(fkb_config_t), intent(inout) :: cfg
    character(len=*), intent(in) :: key
    integer(int64), allocatable, intent(out) :: v(:)
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: text, item
    integer :: a, b, k, ios
    call cfg%get_text(key, text, stat, msg)
    if (stat /= FKB_OK) return
    allocate(v(count([(text(k:k) == ',', k = 1, len(text))]) + 1))
    a = 1
    do k = 1, size(v)
      b = index(text(a:), ',')
      if (b == 0) then
        b = len(text) + 1
      else
        b = a + b - 1
      end if
      item = text(a:b - 1)
      ios = 1
      if (len(item) > 0 .and. len(item) <= 18 .and. verify(item, '0123456789') == 0) &
        read (item, *, iostat=ios) v(k)
      if (ios /= 0 .or. v(k) < 1) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ": option '" // key // &
                       "' must be a comma-separated list of integers >= 1, got '" // text // "'")
        return
      end if
      a = b + 1
    end do
  end subroutine parse_int_list

  pure function int_list_text(v) result(text)
    !! "4,6": a list option as written in a `.fkb` header (before encoding).
    integer(int64), intent(in) :: v(:)
    character(len=:), allocatable :: text
    integer :: k
    text = ''
    do k = 1, size(v)
      if (k > 1) text = text // ','
      text = text // int_text(v(k))
    end do
  end function int_list_text

  subroutine reshape_configure(self, cfg, stat, msg)
    class(fkb_reshape_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64), allocatable :: s(:)
    s = self%in_shapes(1)%d
    select case (self%type_name)
    case ('reshape')
      self%op = OP_RESHAPE
      call parse_int_list(cfg, 'target_shape', self%target, stat, msg)
      if (stat /= FKB_OK) return
      if (product(self%target) /= product(s) .or. any(self%target > product(s))) then
        call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': target_shape (' // &
                       int_list_text(self%target) // ') does not hold the ' // &
                       int_text(product(s)) // ' values of shape (' // int_list_text(s) // ')')
        return
      end if
      self%n_out = self%n_in
      self%out_shape = self%target
    case ('permute')
      self%op = OP_PERMUTE
      call parse_int_list(cfg, 'dims', self%dims, stat, msg)
      if (stat /= FKB_OK) return
      if (.not. is_permutation(self%dims, size(s, kind=int64))) then
        call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': dims (' // &
                       int_list_text(self%dims) // ') is not a permutation of the axes 1..' // &
                       int_text(size(s, kind=int64)) // ' of shape (' // int_list_text(s) // ')')
        return
      end if
      self%n_out = self%n_in
      self%out_shape = s(self%dims)
      call permutation_map(s, self%dims, self%src)
    case default
      self%op = OP_REPEAT
      call cfg%get_int('n', self%n, stat, msg)
      if (stat /= FKB_OK) return
      if (self%n < 1) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': n must be at least 1, got ' &
                       // int_text(self%n))
        return
      end if
      if (size(s) /= 1) then
        call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': needs rank-1 input, got ' // &
                       'per-sample shape (' // int_list_text(s) // ')')
        return
      end if
      if (self%n > huge(1_int64) / s(1)) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': n out of range')
        return
      end if
      self%n_out = self%n * s(1)
      self%out_shape = [self%n, s(1)]
    end select
  end subroutine reshape_configure

  pure logical function is_permutation(dims, rank)
    integer(int64), intent(in) :: dims(:), rank
    integer(int64) :: k
    is_permutation = size(dims, kind=int64) == rank
    do k = 1, rank
      is_permutation = is_permutation .and. count(dims == k) == 1
    end do
  end function is_permutation

  subroutine permutation_map(s, dims, src)
    !! src(i): the 1-based flat (C order) input position of flat output position i, for the
    !! output shape s(dims) (output axis k is input axis dims(k)).
    integer(int64), intent(in) :: s(:), dims(:)
    integer(int64), allocatable, intent(out) :: src(:)
    integer(int64) :: stride_in(size(s)), stride_out(size(s)), idx(size(s)), so(size(s))
    integer(int64) :: i, k, r, pos
    r = size(s)
    stride_in(r) = 1
    do k = r - 1, 1, -1
      stride_in(k) = stride_in(k + 1) * s(k + 1)
    end do
    so = s(dims)
    stride_out = stride_in(dims)   ! stepping output axis k moves the input by this
    allocate(src(product(s)))
    idx = 0
    pos = 1
    do i = 1, size(src, kind=int64)
      src(i) = pos
      ! Advance the output multi-index (last axis fastest).
      do k = r, 1, -1
        idx(k) = idx(k) + 1
        pos = pos + stride_out(k)
        if (idx(k) < so(k)) exit
        pos = pos - idx(k) * stride_out(k)
        idx(k) = 0
      end do
    end do
  end subroutine permutation_map

  subroutine reshape_options(self, cfg)
    class(fkb_reshape_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    select case (self%op)
    case (OP_RESHAPE); call cfg%set('target_shape', int_list_text(self%target), list=.true.)
    case (OP_PERMUTE); call cfg%set('dims', int_list_text(self%dims), list=.true.)
    case default;      call cfg%set('n', int_text(self%n))
    end select
  end subroutine reshape_options

  logical function reshape_is_identity(self)
    class(fkb_reshape_t), intent(in) :: self
    reshape_is_identity = self%op == OP_RESHAPE
  end function reshape_is_identity

  subroutine reshape_forward_r32(self, x, y)
    integer, parameter :: wp = real32
    class(fkb_reshape_t), intent(in) :: self
    real(wp), intent(in), contiguous :: x(:, :)
    real(wp), intent(inout), contiguous :: y(:, :)
    include 'kernels/reshape.inc'
  end subroutine reshape_forward_r32

  subroutine reshape_forward_r64(self, x, y)
    integer, parameter :: wp = real64
    class(fkb_reshape_t), intent(in) :: self
    real(wp), intent(in), contiguous :: x(:, :)
    real(wp), intent(inout), contiguous :: y(:, :)
    include 'kernels/reshape.inc'
  end subroutine reshape_forward_r64

end module fkb_layer_reshape
